"""The C allocator's policy in a training process (dinbench.allocator): freed memory is kept for the next step."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dinbench import allocator
from dinbench.config import RunConfig
from dinbench.runtime import LocalRuntime
from dinbench.train import Trainer

REPO = Path(__file__).resolve().parent.parent
GLIBC = allocator._libc() is not None


class FakeLibc:
    def __init__(self, answer: int = 1) -> None:
        self.calls: list[tuple] = []
        self.answer = answer

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return self.answer

    def malloc_trim(self, pad: int) -> int:
        self.calls.append(("trim", pad))
        return self.answer


@pytest.fixture
def fresh(monkeypatch):
    """The module as in a process that has not set anything yet."""
    monkeypatch.setattr(allocator, "_state", "default")


def test_sets_both_thresholds_once(fresh):
    libc = FakeLibc()
    assert allocator.keep_freed_memory(libc, environ={}) == "kept" == allocator.state()
    # the mmap threshold first, at glibc's largest, then the trim threshold at the largest int
    assert libc.calls == [(-3, 32 << 20), (-1, 2**31 - 1)]
    assert allocator.keep_freed_memory(libc, environ={}) == "kept"
    assert len(libc.calls) == 2  # idempotent: a second trainer in the process sets nothing again


@pytest.mark.parametrize("environ", [
    {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"},
    {"GLIBC_TUNABLES": "glibc.rtld.optional_static_tls=512:glibc.malloc.mmap_threshold=65536"},
    {"MALLOC_TRIM_THRESHOLD_": "0"},
    {"MALLOC_MMAP_THRESHOLD_": "131072"},
    {"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"},
    {"LD_PRELOAD": "/usr/lib/libtcmalloc_minimal.so.4"},
])
def test_the_users_malloc_settings_win(fresh, environ):
    libc = FakeLibc()
    assert allocator.keep_freed_memory(libc, environ=environ) == "user" == allocator.state()
    assert libc.calls == []


def test_other_tunables_do_not_count_as_malloc_settings(fresh):
    libc = FakeLibc()
    assert allocator.keep_freed_memory(libc, environ={"GLIBC_TUNABLES": "glibc.rtld.optional_static_tls=512"}) == "kept"


def test_refused_or_unavailable_leaves_the_default(fresh, monkeypatch):
    assert allocator.keep_freed_memory(FakeLibc(answer=0), environ={}) == "default"
    monkeypatch.setattr(allocator, "_libc", lambda: None)  # not glibc (macOS, musl, Windows)
    assert allocator.keep_freed_memory(environ={}) == "default" == allocator.state()


def test_free_memory_is_released_only_where_dinbench_keeps_it(fresh):
    libc = FakeLibc()
    assert not allocator.release_free_memory(libc)  # glibc (or the user's settings) trims by itself
    assert libc.calls == []
    allocator.keep_freed_memory(libc, environ={})
    assert allocator.release_free_memory(libc)
    assert libc.calls[-1] == ("trim", 0)


def test_a_runs_peak_memory_starts_by_releasing_free_memory(monkeypatch):
    from dinbench.memory import PeakMemory

    calls = []
    monkeypatch.setattr(allocator, "release_free_memory", lambda: calls.append(1))
    PeakMemory("cpu")
    assert calls == [1]


@pytest.mark.skipif(not GLIBC, reason="needs glibc (mallopt)")
@pytest.mark.parametrize("keep, release", [(False, False), (True, False), (True, True)])
def test_freed_blocks_are_reused_without_page_faults(keep, release):
    """The mechanism, in a fresh interpreter each: four 3 MB blocks allocated, written and freed, three rounds.
    glibc's defaults give the 12 MB at the heap's top back to the OS after each round (more than twice
    the raised mmap threshold), so the third round faults ~3,000 pages in again; kept, it faults none;
    kept but released before the third round (a new run's start), it faults them in again."""
    script = textwrap.dedent(f"""
        import ctypes, resource, sys
        sys.path.insert(0, {str(REPO)!r})
        from dinbench import allocator
        if {keep}:
            assert allocator.keep_freed_memory(environ={{}}) == "kept"
        libc = ctypes.CDLL(None)
        libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
        size = 3 << 20
        def round_():
            blocks = [libc.malloc(size) for _ in range(4)]
            for b in blocks:
                ctypes.memset(b, 1, size)
            for b in blocks:
                libc.free(b)
        round_(); round_()
        if {release}:
            assert allocator.release_free_memory()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        round_()
        print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """)
    env = {"PATH": "/usr/bin:/bin"}  # no GLIBC_TUNABLES / MALLOC_* of the caller's
    faults = int(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                                env=env).stdout)
    if keep and not release:
        assert faults < 100
    else:
        assert faults > 2000  # 12 MB = 3,072 pages of 4 KB


def test_a_trainer_keeps_freed_memory_and_its_record_says_so(tiny, monkeypatch):
    calls = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append(1))
    Trainer(RunConfig(dataset=tiny.name, pooler="average", epochs=1, embedding_dim=8), tiny, LocalRuntime())
    assert calls == [1]
    from dinbench.records import environment

    monkeypatch.setattr(allocator, "_state", "kept")
    assert environment()["allocator"] == "kept"


def test_scoring_gives_free_memory_back_after_every_batch(tiny, monkeypatch):
    """Scoring's batches grow (shortest histories first): a kept heap would hold a block of every size."""
    from dinbench.batches import length_sorted_indices
    from dinbench.runtime import predict

    trainer = Trainer(RunConfig(dataset=tiny.name, pooler="din", epochs=1, embedding_dim=8), tiny, LocalRuntime())
    calls = []
    monkeypatch.setattr(allocator, "release_free_memory", lambda: calls.append(1))
    samples = trainer.data.valid
    probs = predict(trainer.learner.model, trainer.data.store, samples, 64, "cpu")
    assert len(probs) == len(samples)
    assert len(calls) == len(length_sorted_indices(samples.hist_len, 64)) > 1
