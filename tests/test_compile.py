"""--compile: the static batch that cuda-graphs captures changes no pooler's output or gradient beyond
float rounding; torch.compile trains to the same metrics as the eager model and saves the plain
model's weights; cuda-graphs without CUDA is refused in one line."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from dinbench import poolers
from dinbench.batches import BehaviourStore
from dinbench.config import RunConfig
from dinbench.errors import DinbenchError
from dinbench.grid import run_identity
from dinbench.model.build import build_model
from helpers import assert_user_error


def _compile_unavailable() -> str | None:
    import torch._dynamo

    if not torch._dynamo.is_dynamo_supported():
        return "torch.compile is not supported on this Python/torch"
    if not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        return "torch.compile on the CPU needs a C++ compiler, and none is installed"
    return None


@pytest.mark.parametrize("spec, options", [(s, {}) for s in poolers.expand("all")] + [
    ("din", {"outer_product": True}),
])
def test_the_static_batch_of_cuda_graphs_changes_no_pooler(tiny, spec, options):
    """--compile cuda-graphs trains on batch_static (fixed width, a fixed number of listed positions:
    the real ones, then fillers at padding): logits, the real positions' weights and every gradient
    equal the packed batch's up to float rounding, padding weights are 0, in training and eval mode."""
    torch.manual_seed(0)
    cfg = RunConfig(pooler=spec, pooler_options=options, embedding_dim=8, mlp_hidden=(16,), max_len=20)
    model = build_model(cfg, tiny)
    store = BehaviourStore(tiny)
    samples = store.samples(tiny.splits["train"], cfg.max_len)
    idx = np.random.default_rng(0).permutation(len(samples))[:64]
    batch = store.batch(samples, idx)
    width = batch.mask.shape[1]
    real = int(samples.hist_len[idx].sum())
    static = store.batch_static(samples, torch.from_numpy(idx), cfg.max_len, capacity=real + 37)
    wide = cfg.max_len + 1
    assert static.mask.shape == (64, wide) and len(static.row) == real + 37 and int(static.real.sum()) == real
    assert not static.mask[:, width:].any() and int(static.counts.sum()) == real + 37
    assert static.mask[static.row, static.pos].equal(static.real)  # fillers sit at padding
    for train in (True, False):
        model.train(train)
        grads = []
        for b in (batch, static):
            model.zero_grad(set_to_none=True)
            logits, weights = model(b)
            logits.sum().backward()
            grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
            if b is batch:
                logits_packed, weights_packed = logits.detach(), weights
        torch.testing.assert_close(logits.detach(), logits_packed, rtol=1e-5, atol=1e-5)
        if weights is not None:
            torch.testing.assert_close(weights[:, :width], weights_packed, rtol=1e-5, atol=1e-5)
            assert not weights[:, width:].any()
        assert grads[0].keys() == grads[1].keys()
        for name in grads[0]:
            torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-4, atol=1e-6, msg=name)


def test_cuda_graphs_without_cuda_is_refused_in_one_line(tiny, tmp_path, cli):
    from dinbench.train import train_run

    cfg = RunConfig(pooler="average", epochs=1, compile="cuda-graphs")
    with pytest.raises(DinbenchError, match="--compile cuda-graphs needs a CUDA device"):
        train_run(cfg, tiny, tmp_path / "r")
    assert not (tmp_path / "r").exists() or not list((tmp_path / "r").iterdir())  # no run folder claimed
    invoke, _, results = cli
    for command in ("run", "sweep"):
        for mode in ("cuda-graphs", "on+cuda-graphs"):
            assert_user_error(invoke(command, "--pooler", "average", "--epochs", "1", "--compile", mode),
                              f"--compile {mode} needs a CUDA device", "--compile on")
    assert_user_error(invoke("run", "--compile", "graphs"), "unknown --compile 'graphs'",
                      "auto, off, on, cuda-graphs, on+cuda-graphs")
    assert not list(results.glob("*/record.json"))


def test_compile_is_in_the_record_but_does_not_make_another_run():
    base = RunConfig(pooler="din").to_dict()
    assert base["compile"] == "auto"
    assert run_identity("fp", {**base, "compile": "on"}) == run_identity("fp", base)
    old = {k: v for k, v in base.items() if k != "compile"}  # records written before the option
    assert run_identity("fp", old) == run_identity("fp", base)


@pytest.mark.skipif(_compile_unavailable() is not None, reason=str(_compile_unavailable()))
def test_a_compiled_run_matches_the_eager_run_and_saves_the_plain_model(tiny, tmp_path):
    """One short din run (softmax attention over masked histories) compiled and not: the same metrics
    within float tolerance, and model.pt holds the plain model's keys (no ``_orig_mod.``)."""
    import json

    from dinbench.train import train_run

    cfg = RunConfig(pooler="din:softmax", epochs=1, batch_size=256, embedding_dim=4, mlp_hidden=(8,),
                    max_len=20, lr=0.01)
    eager_dir, eager = train_run(cfg, tiny, tmp_path / "eager")
    compiled_dir, compiled = train_run(cfg.replace(compile="on"), tiny, tmp_path / "compiled")
    assert compiled["config"]["compile"] == "on" and eager["config"]["compile"] == "off"
    for split in ("test", "valid"):
        a = eager["test"] if split == "test" else eager["epochs"][0]["valid"]
        b = compiled["test"] if split == "test" else compiled["epochs"][0]["valid"]
        assert abs(a["auc"] - b["auc"]) < 1e-4 and abs(a["gauc"] - b["gauc"]) < 1e-4, (split, a, b)
    assert abs(eager["epochs"][0]["train_loss"] - compiled["epochs"][0]["train_loss"]) < 1e-5
    saved = torch.load(compiled_dir / "model.pt", weights_only=True)
    assert set(saved) == set(torch.load(eager_dir / "model.pt", weights_only=True))
    assert not any("_orig_mod" in k for k in saved)
    assert json.loads((compiled_dir / "record.json").read_text())["status"] == "completed"


@pytest.mark.parametrize("field, value, fix", [
    ("l2_minibatch", 0.01, "--l2-minibatch 0"), ("lr_decay_steps", 100, "--lr-decay-steps 0"),
])
def test_cuda_graphs_refuses_what_a_graph_cannot_hold_in_one_line(field, value, fix):
    from dinbench import graph_step

    cfg = RunConfig(pooler="din", compile="cuda-graphs").replace(**{field: value})
    with pytest.raises(DinbenchError, match=fix):
        graph_step.check(cfg, torch.device("cuda"), world=1)
    with pytest.raises(DinbenchError, match="without --distributed"):
        graph_step.check(RunConfig(pooler="din", compile="cuda-graphs"), torch.device("cuda"), world=2)
    graph_step.check(RunConfig(pooler="din", compile="cuda-graphs"), torch.device("cuda"), world=1)  # allowed
    compiled = RunConfig(pooler="din", compile="on+cuda-graphs")  # the compiled captured step: the same refusals
    with pytest.raises(DinbenchError, match=f"--compile on\\+cuda-graphs needs .*{fix}"):
        graph_step.check(compiled.replace(**{field: value}), torch.device("cuda"), world=1)
    graph_step.check(compiled, torch.device("cuda"), world=1)


def test_cuda_graphs_refuses_dice_in_the_attention_unit(tiny):
    from dinbench import graph_step

    graph_step.check_model(build_model(RunConfig(pooler="din", mlp_activation="dice"), tiny))  # the MLP's Dice: fine
    with pytest.raises(DinbenchError, match="Dice in the attention unit"):
        graph_step.check_model(build_model(RunConfig(pooler="din", pooler_options={"attention_activation": "dice"}), tiny))


@pytest.mark.parametrize("optimizer, sparse", [("lazy-adam", False), ("adam", False), ("rowwise-adagrad", False),
                                               ("lazy-adam", True), ("rowwise-adagrad", True)])
def test_the_static_step_trains_like_the_eager_step(tiny, optimizer, sparse, monkeypatch):
    """What cuda-graphs captures (Trainer.static_step: the static batch, gradients zeroed in place),
    run eagerly on the CPU for a few full batches, moves the weights as the eager step does; with
    ``sparse``, with sparse table gradients (graph_step.SPARSE_TABLES: the fillers' zero entries must
    not count as touched rows)."""
    from dinbench import optimizers
    from dinbench.runtime import LocalRuntime
    from dinbench.train import Trainer

    if sparse:
        monkeypatch.setattr(optimizers, "SPARSE_MIN_ROWS", 1)  # the tiny tables take sparse gradients

    cfg = RunConfig(pooler="din:softmax", batch_size=64, embedding_dim=4, mlp_hidden=(8,), max_len=20,
                    lr=0.01, optimizer=optimizer)
    eager, static = Trainer(cfg, tiny, LocalRuntime()), Trainer(cfg, tiny, LocalRuntime())
    static.graph = object()  # as under cuda-graphs: gradients are zeroed in place, never set to None
    rows = static.data.store.rows(np.random.default_rng(0).permutation(len(static.data.train))[: 64 * 4])
    for i in range(4):
        part = rows[i * 64 : (i + 1) * 64]
        loss_eager, _ = eager.step(part) if i < 3 else eager.update(eager.data.store.batch(eager.data.train, part), 64, 64)
        loss_static, _ = static.static_step(part.device, int(static.data.train.hist_len[part.host].sum()) + 50)
        torch.testing.assert_close(loss_static, loss_eager, rtol=1e-5, atol=1e-6)
    invariant = "poolers.0.rest.3.bias"  # the scores' shared offset, which softmax ignores: its gradient is rounding noise
    for (name, a), b in zip(eager.learner.model.state_dict().items(), static.learner.model.state_dict().values()):
        if name != invariant:
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=name)
    probe = eager.data.store.batch(eager.data.test, np.arange(128))
    torch.testing.assert_close(static.learner.model(probe)[0], eager.learner.model(probe)[0], rtol=1e-4, atol=1e-5)
    assert all(p.grad is not None for p in static.learner.model.parameters() if p.requires_grad)
    assert static.learner.model.embeddings.item.weight.grad.is_sparse == sparse


def test_a_graph_keeps_sparse_table_gradients_unless_switched_off(monkeypatch):
    """Sparse table gradients: under a row-sparse optimizer in one process; in a CUDA graph too, with
    graph_step.SPARSE_TABLES (on since a GPU measured it; off, the masked update over whole tables)."""
    from dinbench import graph_step
    from dinbench.train import sparse_tables

    lazy = RunConfig(optimizer="lazy-adam")
    assert sparse_tables(lazy, world=1) and not sparse_tables(lazy, world=2)
    assert not sparse_tables(RunConfig(optimizer="adam"), world=1)
    assert graph_step.SPARSE_TABLES
    for mode in ("cuda-graphs", "on+cuda-graphs"):
        graphs = lazy.replace(compile=mode)
        assert sparse_tables(graphs, world=1) and not sparse_tables(graphs, world=2)
        monkeypatch.setattr(graph_step, "SPARSE_TABLES", False)
        assert not sparse_tables(graphs, world=1)
        monkeypatch.setattr(graph_step, "SPARSE_TABLES", True)


def _captured_by_default() -> list[str]:
    from dinbench import poolers

    return [s for s in poolers.expand("all") if poolers.REGISTRY[poolers.parse_spec(s)[0]].info.graphs_by_default]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="--compile cuda-graphs needs a CUDA device")
@pytest.mark.parametrize("spec, variant", [(s, "") for s in _captured_by_default()] + [
    ("din:softmax", "sparse"), ("average", "sparse"), ("din:softmax", "masked"),
    ("din:softmax", "compiled"), ("average", "compiled")])
def test_a_cuda_graphs_run_matches_the_eager_run_on_cuda(tiny, tmp_path, monkeypatch, spec, variant):
    """On a GPU: the captured run's metrics equal the eager run's within float tolerance, and its
    optimizer's step count (kept on the device) counts every step. Every pooler --compile auto
    captures, and din and average with the captured step's variants: every table sparse inside the
    graph (graph_step.SPARSE_TABLES, small tables too), the masked update on every table (SPARSE_TABLES
    off), the compiled step captured (--compile on+cuda-graphs)."""
    from dinbench import graph_step, optimizers
    from dinbench.train import train_run

    if variant == "sparse":
        monkeypatch.setattr(optimizers, "SPARSE_MIN_ROWS", 1)
    monkeypatch.setattr(graph_step, "SPARSE_TABLES", variant != "masked")
    cfg = RunConfig(pooler=spec, epochs=2, batch_size=64, embedding_dim=4, mlp_hidden=(8,), max_len=20,
                    lr=0.01, device="cuda")
    _, eager = train_run(cfg.replace(compile="off"), tiny, tmp_path / "eager")
    mode = "on+cuda-graphs" if variant == "compiled" else "cuda-graphs"
    _, graphs = train_run(cfg.replace(compile=mode), tiny, tmp_path / "graphs")
    assert graphs["config"]["compile"] == mode
    for a, b in zip(eager["epochs"], graphs["epochs"]):
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-4, (a, b)
        assert abs(a["valid"]["gauc"] - b["valid"]["gauc"]) < 1e-3, (a, b)
    assert abs(eager["test"]["auc"] - graphs["test"]["auc"]) < 1e-3


def test_compile_auto_picks_cuda_graphs_only_where_a_graph_can_hold_the_run():
    from dinbench import graph_step

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    auto = RunConfig(pooler="din")
    assert graph_step.resolve(auto, cuda, world=1).compile == "cuda-graphs"
    assert graph_step.resolve(auto, cpu, world=1).compile == "off"
    assert graph_step.resolve(auto, cuda, world=2).compile == "off"
    assert graph_step.resolve(auto.replace(lr_decay_steps=10), cuda, world=1).compile == "off"
    assert graph_step.resolve(auto.replace(l2_minibatch=0.1), cuda, world=1).compile == "off"
    dice = RunConfig(pooler="din", pooler_options={"attention_activation": "dice"})
    assert graph_step.resolve(dice, cuda, world=1).compile == "off"
    for mode in ("off", "on", "cuda-graphs", "on+cuda-graphs"):  # an explicit mode is kept (and refused or not by check)
        assert graph_step.resolve(auto.replace(compile=mode), cpu, world=1).compile == mode


def test_compile_auto_captures_only_the_poolers_measured_on_a_gpu():
    """auto = cuda-graphs only where a GPU measured the captured runs (About.graphs_by_default); the
    others a graph can hold run eagerly under auto and are captured on request."""
    from dinbench import graph_step, poolers

    cuda = torch.device("cuda")
    measured = {"average", "din:none", "din:softmax",  # the H200, 2026-11-30, ninth and eleventh sessions
                "time-decay", "dot:softmax", "bilinear:softmax", "multihead:softmax", "bst", "sim:soft", "eta", "max"}
    measured |= {"dot:none", "bilinear:none", "multihead:none", "sim:hard"}  # the same poolers' other forms
    for spec in poolers.expand("all"):
        name = poolers.parse_spec(spec)[0]
        resolved = graph_step.resolve(RunConfig(pooler=spec), cuda, world=1).compile
        assert resolved == ("cuda-graphs" if spec in measured else "off"), spec
        if poolers.REGISTRY[name].info.cuda_graphs:
            assert graph_step.resolve(RunConfig(pooler=spec, compile="cuda-graphs"), cuda, world=1).compile == "cuda-graphs"


def test_a_run_records_the_compile_mode_that_ran(tiny, tmp_path):
    from dinbench.train import train_run

    cfg = RunConfig(pooler="average", epochs=1, batch_size=256, embedding_dim=4, mlp_hidden=(8,), max_len=20)
    assert cfg.compile == "auto"
    _, record = train_run(cfg, tiny, tmp_path)
    assert record["config"]["compile"] == "off"  # auto, on the CPU


def test_compile_auto_compiles_on_a_cpu_only_measured_poolers_in_long_runs(monkeypatch):
    """On a CPU, auto = on for the poolers measured to pay there (About.compiles_on_cpu: average) when
    the run plans at least CPU_COMPILE_MIN_ROWS training rows; off for shorter runs, other poolers, several
    processes, bf16, Dice attention and a machine without a C++ compiler or Python's headers."""
    import shutil

    from dinbench import poolers, runtime
    from dinbench.config import CPU_COMPILE_MIN_ROWS
    from dinbench.runtime import cpu_compile_mode

    long_run, short_run = CPU_COMPILE_MIN_ROWS, CPU_COMPILE_MIN_ROWS - 1
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")  # a compiler, whatever this machine has
    monkeypatch.setattr(runtime, "_python_headers", lambda: True)  # and Python's headers
    for spec in poolers.expand("all"):
        want = "on" if spec == "average" else "off"
        assert cpu_compile_mode(RunConfig(pooler=spec), 1, long_run) == want, spec
        assert cpu_compile_mode(RunConfig(pooler=spec), 1, short_run) == "off", spec
    average = RunConfig(pooler="average")
    assert cpu_compile_mode(average, 2, long_run) == "off"  # --distributed
    assert cpu_compile_mode(average.replace(precision="bf16"), 1, long_run) == "off"
    import dataclasses  # Dice attention: a pooler with an activation unit, declared as measured for the test

    din = poolers.REGISTRY["din"]
    monkeypatch.setitem(poolers.REGISTRY, "din", dataclasses.replace(din, about=dataclasses.replace(din.info, compiles_on_cpu=True)))
    assert cpu_compile_mode(RunConfig(pooler="din"), 1, long_run) == "on"
    assert cpu_compile_mode(RunConfig(pooler="din", pooler_options={"attention_activation": "dice"}), 1, long_run) == "off"
    monkeypatch.setattr(runtime, "_python_headers", lambda: False)  # no Python.h to build kernels against
    assert cpu_compile_mode(average, 1, long_run) == "off"
    monkeypatch.setattr(runtime, "_python_headers", lambda: True)
    monkeypatch.setattr(shutil, "which", lambda name: None)  # no C++ compiler: inductor could not build a kernel
    assert cpu_compile_mode(average, 1, long_run) == "off"


def test_a_long_cpu_run_records_that_it_ran_compiled(tiny, tmp_path, monkeypatch):
    """The planned rows are epochs x training samples (train + valid under the paper protocol); a run over
    the threshold compiles its training model (compile_net asked for 'on', its record says 'on') and its
    progress says so before the first step; under the threshold it stays eager. torch.compile itself is
    stubbed here (the compiled run's numbers are tested above)."""
    import shutil

    from dinbench import config, runtime, train

    cfg = RunConfig(pooler="average", epochs=2, batch_size=256, embedding_dim=4, mlp_hidden=(8,), max_len=20)
    samples = len(tiny.splits["train"])
    assert train.planned_rows(cfg, tiny) == 2 * samples
    assert train.planned_rows(cfg.replace(protocol="paper"), tiny) == 2 * (samples + len(tiny.splits["valid"]))
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(runtime, "_python_headers", lambda: True)
    monkeypatch.setattr(config, "CPU_COMPILE_MIN_ROWS", 2 * samples)
    monkeypatch.setattr(runtime, "CPU_COMPILE_MIN_ROWS", 2 * samples)
    asked: list[str] = []
    monkeypatch.setattr(train, "compile_net", lambda net, mode: asked.append(mode) or net)
    stages: list[str] = []
    _, record = train.train_run(cfg, tiny, tmp_path / "long", progress=lambda stage, done, total: stages.append(stage))
    assert record["config"]["compile"] == "on" and "on" in asked
    assert "compiling" in stages[0] and not any("compiling" in s for s in stages[1:])
    _, record = train.train_run(cfg.replace(epochs=1), tiny, tmp_path / "short")
    assert record["config"]["compile"] == "off"


def test_a_step_that_torch_compile_cannot_build_is_one_line_and_a_failed_record(tiny, tmp_path, monkeypatch):
    """A compile error at the first step (here inductor's 'no working C++ compiler', raised by a stub of the
    compiled model) stops the run with one line that says what to do, and the record is marked failed; an
    error of another kind is not dressed up as a compile error."""
    import json

    from torch import nn

    from dinbench import train
    from dinbench.errors import DinbenchError

    class FakeInductorError(RuntimeError):
        pass

    FakeInductorError.__module__ = "torch._inductor.exc"  # where torch.compile's errors come from

    class Broken(nn.Module):
        def __init__(self, error: Exception) -> None:
            super().__init__()
            self.error = error

        def forward(self, batch):
            raise self.error

    cfg = RunConfig(pooler="average", epochs=1, batch_size=256, embedding_dim=4, mlp_hidden=(8,), max_len=20, compile="on")
    error = FakeInductorError("InvalidCxxCompiler: No working C++ compiler found\nthe internal stack trace")
    monkeypatch.setattr(train, "compile_net", lambda net, mode: Broken(error))
    with pytest.raises(DinbenchError, match=r"average seed 0: torch.compile could not build the training step "
                                            r"\(InvalidCxxCompiler: No working C\+\+ compiler found\); rerun with "
                                            r"--compile off") as raised:
        train.train_run(cfg, tiny, tmp_path / "broken")
    assert "\n" not in str(raised.value)
    (record,) = (tmp_path / "broken").glob("*/record.json")
    assert json.loads(record.read_text())["status"] == "failed"
    monkeypatch.setattr(train, "compile_net", lambda net, mode: Broken(ValueError("the model's own bug")))
    with pytest.raises(ValueError, match="the model's own bug"):
        train.train_run(cfg, tiny, tmp_path / "other")
