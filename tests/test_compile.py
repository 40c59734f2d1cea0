"""--compile: the history width rounded to a few static sizes changes no pooler's output beyond
float rounding; torch.compile trains to the same metrics as the eager model and saves the plain
model's weights; cuda-graphs without CUDA is refused in one line."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from dinbench import poolers
from dinbench.batches import BehaviourStore, pad_width, round_width
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


def test_round_width_gives_a_few_sizes_never_narrower_nor_beyond_max_len():
    assert [round_width(w, 50) for w in (1, 7, 8, 9, 16, 17, 32, 33, 50)] == [8, 8, 8, 16, 16, 32, 32, 50, 50]
    assert round_width(3, 4) == 4 and round_width(300, 100_000) == 512
    assert len({round_width(w, 50) for w in range(1, 51)}) == 4


@pytest.mark.parametrize("spec, options", [(s, {}) for s in poolers.expand("all")] + [
    ("din", {"outer_product": True}), ("din", {"attention_activation": "dice"}),
])
def test_padding_histories_to_the_rounded_width_changes_no_pooler(tiny, spec, options):
    """Padding positions are masked: logits and the real positions' weights stay equal up to float
    rounding (softmax attention included), padding weights stay 0, in training and in eval mode."""
    torch.manual_seed(0)
    cfg = RunConfig(pooler=spec, pooler_options=options, embedding_dim=8, mlp_hidden=(16,), max_len=20)
    model = build_model(cfg, tiny)
    store = BehaviourStore(tiny)
    samples = store.samples(tiny.splits["train"], cfg.max_len)
    idx = np.random.default_rng(0).permutation(len(samples))[:64]
    batch = store.batch(samples, idx)
    width = batch.mask.shape[1]
    wide = pad_width(batch, round_width(width, 64) + 3)
    assert wide.mask.shape[1] > width and not wide.mask[:, width:].any()
    for train in (True, False):
        model.train(train)
        logits, weights = model(batch)
        logits_wide, weights_wide = model(wide)
        torch.testing.assert_close(logits_wide, logits, rtol=1e-5, atol=1e-5)
        if weights is not None:
            torch.testing.assert_close(weights_wide[:, :width], weights, rtol=1e-5, atol=1e-5)
            assert not weights_wide[:, width:].any()


def test_cuda_graphs_without_cuda_is_refused_in_one_line(tiny, tmp_path, cli):
    from dinbench.train import train_run

    cfg = RunConfig(pooler="average", epochs=1, compile="cuda-graphs")
    with pytest.raises(DinbenchError, match="--compile cuda-graphs needs a CUDA device"):
        train_run(cfg, tiny, tmp_path / "r")
    assert not (tmp_path / "r").exists() or not list((tmp_path / "r").iterdir())  # no run folder claimed
    invoke, _, results = cli
    for command in ("run", "sweep"):
        assert_user_error(invoke(command, "--pooler", "average", "--epochs", "1", "--compile", "cuda-graphs"),
                          "--compile cuda-graphs needs a CUDA device", "--compile on")
    assert_user_error(invoke("run", "--compile", "graphs"), "unknown --compile 'graphs'", "off, on, cuda-graphs")
    assert not list(results.glob("*/record.json"))


def test_compile_is_in_the_record_but_does_not_make_another_run():
    base = RunConfig(pooler="din").to_dict()
    assert base["compile"] == "off"
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
