"""dinbench tune: one budget for every pooler, shared axes, resumable studies, validation only."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest

pytest.importorskip("optuna")

from dinbench import space as space_mod  # noqa: E402
from dinbench import tuning  # noqa: E402
from dinbench.errors import DinbenchError  # noqa: E402
from dinbench.options import Search  # noqa: E402

from helpers import assert_user_error  # noqa: E402

SHARED = ("batch_size", "init_std", "l2_minibatch", "lr")


def small_space() -> space_mod.Space:
    """The default space with tiny batches (fast on the tiny dataset): the axes stay the declared ones."""
    base = space_mod.default_space()
    return space_mod.Space({**base.shared, "batch_size": Search("choice", values=(64, 128))}, base.own)


def setup_for(tiny, epochs: int = 1, seed: int = 0, sp=None) -> tuning.Setup:
    return tuning.Setup("synthetic", tiny.fingerprint, sp or small_space(), {"epochs": epochs}, seed)


def run(tiny, path, specs, budget, prepared=None, **kw):
    finished = []
    tuning.tune(setup_for(tiny, **kw), specs, budget, path, tuning.InlineExecutor(), prepared or tiny,
                on_trial=finished.append)
    return finished


def trials_of(path, spec):
    import optuna

    return optuna.load_study(study_name=spec, storage=tuning.storage_url(path)).get_trials()


def test_default_space_is_read_off_the_declarations():
    from dinbench import poolers
    from dinbench.config import OPTIONS

    sp = space_mod.default_space()
    assert set(sp.shared) == {k for k, o in OPTIONS.items() if o.search is not None} >= set(SHARED)
    din = {o.name: o for o in poolers.options("din")}
    assert sp.own["din"]["attention_activation"] == din["attention_activation"].search
    assert "heads" in sp.own["multihead"] and "half_life" in sp.own["time-decay"]
    assert "average" not in sp.own  # no options: the shared axes only


def test_the_plan_lists_only_the_tuned_poolers_own_axes():
    sp = space_mod.default_space()
    lines = sp.lines(["average", "din:softmax", "din:none"])
    own = {line.split()[0] for line in lines if not line.startswith("shared ")}
    assert own == {"din"}  # not multihead's, bst's, ...; din's variants list them once
    assert len([line for line in lines if line.startswith("din ")]) == len(sp.own["din"])
    assert [line for line in lines if line.startswith("shared ")] == [f"shared {k}: " + space_mod._describe(v) for k, v in sp.shared.items()]
    assert {line.split()[0] for line in sp.lines()} == {"shared"} | set(sp.own)  # no specs: every pooler's


def test_space_file_changes_ranges_and_fixes_values(tmp_path):
    f = tmp_path / "space.toml"
    f.write_text('[shared]\nlr = { log = [1e-3, 1e-2] }\ninit_std = 0.05\nepochs = 3\n'
                 '[pooler.din]\nattention_hidden = { choices = ["80,40", [36]] }\n', encoding="utf-8")
    sp = space_mod.load_space(f)
    assert sp.shared["lr"] == Search("log", 1e-3, 1e-2)
    assert sp.shared["init_std"] == 0.05 and sp.shared["epochs"] == 3
    assert sp.own["din"]["attention_hidden"] == Search("choice", values=((80, 40), (36,)))
    assert sp.shared["batch_size"] == space_mod.default_space().shared["batch_size"]  # untouched: the default
    for text, fragment in [('[shared]\nseed = 1\n', "no option 'seed'"),
                           ('[shared]\nlr = { log = [0.0, 1.0] }\n', "must be a positive number"),
                           ('[shared]\nbatch_size = { uniform = [1, 8] }\n', "needs a float option"),
                           ('[pooler.din]\nheads = { choices = [1] }\n', "no option 'heads'"),
                           ('[pooler.din]\nattention_activation = { choices = ["tanh"] }\n', "unknown --attention-activation")]:
        f.write_text(text, encoding="utf-8")
        with pytest.raises(DinbenchError, match=fragment):
            space_mod.load_space(f)


def test_two_poolers_get_the_same_budget_and_shared_axes(tiny, tmp_path):
    path = tmp_path / "s.db"
    finished = run(tiny, path, ["average", "din:none"], 3, epochs=2)
    assert sorted(f.spec for f in finished) == ["average"] * 3 + ["din:none"] * 3
    avg, din = trials_of(path, "average"), trials_of(path, "din:none")
    assert len(avg) == len(din) == 3
    for a, d in zip(avg, din):
        # the sampler's start-up draws are the same for every pooler: the shared axes match trial by trial
        assert {k: a.params[k] for k in SHARED} == {k: d.params[k] for k in SHARED}
        assert set(a.params) == set(SHARED)
        assert set(d.params) == set(SHARED) | {"attention_hidden", "attention_activation"}
        ca, cd = a.user_attrs["config"], d.user_attrs["config"]
        assert {k: ca[k] for k in ("epochs", "patience", "seed", "embedding_dim")} == \
            {k: cd[k] for k in ("epochs", "patience", "seed", "embedding_dim")}
        assert ca["lr"] == a.params["lr"] and cd["pooler_options"]["attention_activation"] == d.params["attention_activation"]
        # the pruner's input: one valid GAUC per epoch, reported while the trial trained
        if a.state.name == "COMPLETE":
            assert sorted(a.intermediate_values) == [1, 2]
            assert a.value == max(a.intermediate_values.values())
    assert len({a.params["lr"] for a in avg}) == 3  # and the trials do differ
    best = {b.spec: b for b in tuning.best_trials(path)}
    assert best["average"].budget == best["din:none"].budget == 3
    assert best["din:none"].searched == ["batch_size", "init_std", "l2_minibatch", "lr", "attention_activation",
                                         "attention_hidden"]


def test_a_killed_study_resumes_with_only_the_missing_trials(tiny, tmp_path):
    path = tmp_path / "s.db"
    assert len(run(tiny, path, ["average"], 2)) == 2
    # a kill mid-trial leaves it running in the study: it must neither count nor block
    study = tuning.open_studies(path, setup_for(tiny), ["average"], 2)["average"]
    study.sampler = tuning._sampler(0, 2)
    study.ask()
    finished = run(tiny, path, ["average"], 4)
    assert len(finished) == 2  # 2 more, not 4
    states = [t.state.name for t in trials_of(path, "average")]
    assert states.count("FAIL") == 1 and states.count("COMPLETE") + states.count("PRUNED") == 4
    assert run(tiny, path, ["average"], 4) == []  # done: nothing more runs
    # resuming asks the same trials as one uninterrupted study
    straight = tmp_path / "straight.db"
    run(tiny, straight, ["average"], 4)
    resumed = [t.params for t in trials_of(path, "average") if t.state.name != "FAIL"]
    assert resumed == [t.params for t in trials_of(straight, "average")]


def test_the_test_split_is_never_read(tiny, tmp_path):
    rng = np.random.default_rng(0)
    test = tiny.splits["test"].copy()
    test["label"] = 1.0 - test["label"]  # flipped
    test = test.iloc[rng.permutation(len(test))].reset_index(drop=True)  # and shuffled
    poisoned = dataclasses.replace(tiny, splits={**tiny.splits, "test": test})
    clean = run(tiny, tmp_path / "clean.db", ["din:softmax"], 2)
    dirty = run(tiny, tmp_path / "dirty.db", ["din:softmax"], 2, prepared=poisoned)
    assert [(f.number, f.state, f.value, f.params) for f in clean] == [(f.number, f.state, f.value, f.params) for f in dirty]
    assert [(b.number, b.value, b.config) for b in tuning.best_trials(tmp_path / "clean.db")] == \
        [(b.number, b.value, b.config) for b in tuning.best_trials(tmp_path / "dirty.db")]


def test_a_study_refuses_other_settings_and_unequal_budgets(tiny, tmp_path):
    path = tmp_path / "s.db"
    run(tiny, path, ["average", "dot"], 1)
    with pytest.raises(DinbenchError, match="differ in settings"):
        tuning.open_studies(path, setup_for(tiny, epochs=2), ["average"], 1)
    with pytest.raises(DinbenchError, match="differ in seed"):
        tuning.open_studies(path, setup_for(tiny, seed=1), ["average"], 1)
    tuning.open_studies(path, setup_for(tiny), ["average"], 2)  # budget raised for average only
    with pytest.raises(DinbenchError, match="has 1 of 2 trials"):
        tuning.best_trials(path)
    with pytest.raises(DinbenchError, match="has not tuned din:none"):
        tuning.best_trials(path, ["din:none"])


def test_a_study_resumes_when_other_poolers_axes_change_but_not_its_own(tiny, tmp_path):
    path = tmp_path / "s.db"
    base = small_space()
    newer = space_mod.Space(base.shared, {**base.own, "zzz-new": {"width": Search("choice", values=(1, 2))}})
    tuning.open_studies(path, setup_for(tiny, sp=base), ["average", "din:none"], 1)
    # a pooler added to the registry (its own axes in the default space) leaves both studies resumable
    tuning.open_studies(path, setup_for(tiny, sp=newer), ["average", "din:none"], 1)
    other = {**base.own, "din": {**base.own["din"], "attention_hidden": Search("choice", values=((40, 20),))}}
    tuning.open_studies(path, setup_for(tiny, sp=space_mod.Space(base.shared, other)), ["average"], 1)  # din's, not average's
    with pytest.raises(DinbenchError, match="for din:none .*differ in space"):
        tuning.open_studies(path, setup_for(tiny, sp=space_mod.Space(base.shared, other)), ["din:none"], 1)
    shared = {**base.shared, "lr": Search("log", low=1e-3, high=1e-2)}
    with pytest.raises(DinbenchError, match="for average .*differ in space"):
        tuning.open_studies(path, setup_for(tiny, sp=space_mod.Space(shared, base.own)), ["average"], 1)


def test_sigterm_stops_tune_like_ctrl_c(tiny, tmp_path):
    """``kill PID`` used to end the driver at once, leaving pool workers running as orphans and the
    trials under way marked running; now it stops as Ctrl-C does (workers stopped, nothing miscounted)."""
    import optuna
    import signal

    from dinbench.sweep import sigterm_interrupts

    path = tmp_path / "s.db"
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(tuning.TuneInterrupted, match="rerun the same command"):
        tuning.tune(setup_for(tiny), ["average"], 3, path, tuning.InlineExecutor(), tiny,
                    on_trial=lambda finished: os.kill(os.getpid(), signal.SIGTERM))  # after the first trial
    assert signal.getsignal(signal.SIGTERM) is before  # restored
    trials = optuna.load_study(study_name="average", storage=tuning.storage_url(path)).get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE]  # kept; nothing left running
    with sigterm_interrupts(), pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGTERM)


def test_a_budget_goes_down_only_while_no_pooler_has_used_more(tiny, tmp_path):
    path = tmp_path / "s.db"
    tuning.open_studies(path, setup_for(tiny), ["average", "dot"], 5)  # a study of 5 trials per pooler
    run(tiny, path, ["average", "dot"], 2)  # cut short at 2 each: the budget goes down to 2
    best = {b.spec: b for b in tuning.best_trials(path)}
    assert best["average"].budget == best["dot"].budget == 2 and best["average"].done == 2
    with pytest.raises(DinbenchError, match=r"cannot go down to 1 trials per pooler: average 2, dot 2 .*--trials 2"):
        tuning.open_studies(path, setup_for(tiny), ["average", "dot"], 1)
    best = {b.spec: b for b in tuning.best_trials(path)}  # the refusal changed nothing
    assert best["average"].budget == best["dot"].budget == 2


def test_trials_run_in_the_sweep_process_pool(tiny_data_dir, tiny, tmp_path):
    from dinbench import sweep

    plan = sweep.plan("local", 2, 2, 1, None, "cpu", None)
    path = tmp_path / "s.db"
    finished = []
    executor = tuning.PoolExecutor(plan)
    try:
        tuning.tune(setup_for(tiny), ["average"], 2, path, executor, str(tiny_data_dir), finished.append)
    finally:
        executor.close()
    assert len(finished) == 2
    trials = trials_of(path, "average")
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]  # fewer than 5 complete: never pruned
    assert all(sorted(t.intermediate_values) == [1] for t in trials)  # reported by the workers


def test_tune_then_run_tuned_then_report(cli, tiny_data_dir, tmp_path):
    invoke, _, results = cli
    dirs = ["--data-dir", str(tiny_data_dir), "--results-dir", str(results)]
    space = tmp_path / "space.toml"
    space.write_text("[shared]\nbatch_size = { choices = [64, 128] }\n", encoding="utf-8")
    out = invoke("tune", "--dataset", "synthetic", "--pooler", "average,din", "--trials", "2", "--epochs", "1",
                 "--workers", "1", "--space", str(space), *dirs, dirs=False)
    assert out.exit_code == 0, out.output
    assert "best trial per pooler" in out.output and (results / "_tuning" / "synthetic" / "default.db").is_file()
    out = invoke("run", "--tuned", "--seeds", "2", "--threads", "1", "--lr", "0.1", dirs=True)
    assert_user_error(out, "--tuned takes every setting from the study; drop --lr")
    out = invoke("run", "--tuned", "--seeds", "2", "--threads", "1", dirs=True)
    assert out.exit_code == 0, out.output
    best = {b.spec: b for b in tuning.best_trials(results / "_tuning" / "synthetic" / "default.db")}
    records = [json.loads(p.read_text()) for p in results.glob("*/record.json")]
    assert sorted((r["pooler"], r["seed"]) for r in records) == [("average", 0), ("average", 1), ("din:none", 0),
                                                                  ("din:none", 1)]
    for r in records:
        b = best[r["pooler"]]
        assert r["tuning"]["study"] == "default" and r["tuning"]["trial"] == b.number
        assert r["config"]["lr"] == b.config["lr"] and r["config"]["batch_size"] == b.config["batch_size"]
    # an untuned run next to them: its own group, its plain label
    out = invoke("run", "--pooler", "average", "--epochs", "1", "--threads", "1", dirs=True)
    assert out.exit_code == 0, out.output
    out = invoke("report", "--format", "csv", dirs=True)
    assert out.exit_code == 0, out.output
    import io

    import pandas as pd

    table = pd.read_csv(io.StringIO(out.stdout))
    tuned = table[table["pooler"].str.endswith(" (tuned)")]
    assert sorted(tuned["pooler"]) == ["average (tuned)", "din:none (tuned)"]
    assert tuned["config"].nunique() == 1 and (tuned["seeds"] == 2).all()
    assert tuned.set_index("pooler").loc["average (tuned)", "vs_baseline"] == "baseline"
    plain = table[table["pooler"] == "average"]
    assert len(plain) == 1 and plain["config"].iloc[0] not in set(tuned["config"])


def test_tune_user_errors(cli, tiny_data_dir, tmp_path):
    invoke, _, results = cli
    dirs = ["--data-dir", str(tiny_data_dir), "--results-dir", str(results)]
    assert_user_error(invoke("tune", "--trials", "0", *dirs, dirs=False), "--trials must be at least 1")
    assert_user_error(invoke("tune", "--trials", "1", "--pooler", "nope", *dirs, dirs=False), "unknown pooler 'nope'")
    assert_user_error(invoke("tune", "--trials", "1", "--space", str(tmp_path / "no.toml"), *dirs, dirs=False),
                      "does not exist")
    assert_user_error(invoke("run", "--tuned", dirs=True), "no study at")


def test_the_report_draws_each_tuned_poolers_trials_from_its_study(tmp_path):
    """Issue 15 item 3: per tuned pooler, valid GAUC against trial number and the spread of its trials,
    read from the study the records point at (pruned trials at their last reported epoch)."""
    import optuna

    from dinbench import publish, report, tuning
    from dinbench.atomic import write_json_atomic
    from dinbench.config import RunConfig
    from dinbench.figures.tuning_trials import TuningTrials, study_trials
    from dinbench.records import SCHEMA, load_records

    results = tmp_path / "results"
    db = tuning.study_path(results, "synthetic", "s")
    db.parent.mkdir(parents=True)
    values = {"average": [0.60, 0.64, 0.62], "din:softmax": [0.66, 0.61, 0.70]}
    for spec, vals in values.items():
        study = optuna.create_study(study_name=spec, storage=tuning.storage_url(db), direction="maximize")
        for v in vals:
            study.add_trial(optuna.trial.create_trial(value=v, params={}, distributions={}))
        study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED, intermediate_values={1: 0.55},
                                                  params={}, distributions={}))
        cfg = RunConfig(pooler=spec, seed=0)
        write_json_atomic(results / spec.replace(":", "-") / "record.json", {
            "schema": SCHEMA, "run_id": spec, "status": "completed", "pooler": cfg.pooler, "architecture": "ranking",
            "dataset": {"name": "synthetic", "fingerprint": "a" * 40}, "seed": 0, "config": cfg.to_dict(),
            "best_epoch": 1, "test": {"auc": 0.7, "gauc": max(vals), "logloss": 0.5},
            "tuning": {"study": "s", "db": str(db.relative_to(results)), "pooler": spec, "trial": 0, "searched": ["lr"]}})
    loaded = load_records(results)[0]
    runs = report.runs_frame(loaded)
    table = report.summarize(runs, baseline="average")
    groups = list(publish.groups(loaded, runs, table, tmp_path / "plots", tmp_path, lambda *_: None))
    assert len(groups) == 1
    trials = study_trials(groups[0])
    got = {p: sorted(g[g["state"] == "complete"]["valid_gauc"]) for p, g in trials.groupby("pooler")}
    assert got == {f"{k} (tuned)": sorted(v) for k, v in values.items()}
    assert sorted(trials[trials["state"] == "pruned"]["valid_gauc"]) == [0.55, 0.55]
    (tmp_path / "plots").mkdir()
    TuningTrials().add_to(groups[0])
    (png, caption), = groups[0].section.figures
    assert png.startswith("plots/tuning-trials_") and (tmp_path / png).is_file() and "budget" in caption
    heading, md = groups[0].section.tables[0]
    assert "din:softmax (tuned) | 4 | 1 | 0.7000 | 2" in md  # trials, pruned, best, best at trial
