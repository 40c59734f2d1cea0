"""One declaration per option: experiment files, --print-config, and a new pooler with an option
that reaches `run`, `sweep` and a config file through its own file and one registry line."""

from __future__ import annotations

import json

import pytest
from helpers import assert_user_error

from dinbench import experiment, grid, poolers

TINY = ["--epochs", "1", "--embedding-dim", "4", "--mlp-hidden", "8", "--threads", "1"]


def _records(results):
    return [json.loads(p.read_text()) for p in sorted(results.glob("*/record.json"))]


def test_run_config_file_sets_dataset_pooler_epochs_and_batch_size(cli, tiny_data_dir, tmp_path):
    invoke, _, results = cli
    exp = tmp_path / "exp.toml"
    exp.write_text('dataset = "synthetic"\npooler = ["average", "din:softmax"]\nepochs = 2\nbatch_size = 64\n'
                   "embedding_dim = 4\nmlp_hidden = [8]\n")
    out = invoke("run", "--config", str(exp), "--data-dir", str(tiny_data_dir), "--threads", "1", dirs=False)
    assert out.exit_code == 0, out.output
    records = _records(results) or _records(tmp_path / "results")
    assert sorted(r["pooler"] for r in records) == ["average", "din:softmax"]
    for r in records:
        assert (r["config"]["dataset"], r["config"]["epochs"], r["config"]["batch_size"]) == ("synthetic", 2, 64)
        assert len(r["epochs"]) == 2


def test_command_line_wins_over_the_file_and_print_config_round_trips(cli, tmp_path):
    invoke, _, _ = cli
    exp = tmp_path / "exp.toml"
    exp.write_text('pooler = "time-decay,din"\nepochs = 3\nlr = 0.01\nhalf_life = 7.5\npreset = "paper"\n'
                   '[pooler_options.din]\nattention_hidden = [16, 8]\n')
    out = invoke("run", "--config", str(exp), "--epochs", "4", "--print-config", dirs=False)
    assert out.exit_code == 0, out.output
    printed = tmp_path / "printed.toml"
    printed.write_text(out.stdout)
    first = grid.resolve({"epochs": 4}, experiment.load(exp), str(exp))
    again = grid.resolve({}, experiment.load(printed), str(printed))
    assert again.expand().configs == first.expand().configs  # the printed config gives the same runs
    cfgs = {c.pooler: c for c in first.expand().configs}
    assert cfgs["din:none"].epochs == 4 and cfgs["din:none"].lr == 0.01  # explicit > file
    assert cfgs["din:none"].optimizer == "sgd"  # the file's preset, under the file's own values
    assert cfgs["time-decay"].pooler_options["half_life"] == 7.5
    assert cfgs["din:none"].pooler_options["attention_hidden"] == (16, 8)
    assert "half_life" not in cfgs["din:none"].pooler_options  # a record holds its pooler's options only


@pytest.mark.parametrize("text, fragments", [
    ("epoch = 3\n", ("exp.toml", "unknown key 'epoch'", "epochs")),
    ('optimizer = "adamw"\n', ("exp.toml", "key 'optimizer'", "choose from adam, lazy-adam, rowwise-adagrad, sgd")),
    ("epochs = 0\n", ("exp.toml", "key 'epochs'", "at least 1")),
    ("epochs = [\n", ("exp.toml", "not valid TOML")),
    ("[pooler_options.din]\nhalf_life = 2.0\n", ("exp.toml", "pooler 'din' has no option 'half_life'",
                                                "attention_hidden")),
])
def test_bad_experiment_files_are_one_line_naming_file_and_key(cli, tmp_path, text, fragments):
    invoke, _, _ = cli
    exp = tmp_path / "exp.toml"
    exp.write_text(text)
    assert_user_error(invoke("run", "--config", str(exp), "--print-config"), *fragments)
    assert_user_error(invoke("sweep", "--config", str(exp), "--print-config", dirs=False), *fragments)


def test_missing_experiment_file(cli, tmp_path):
    invoke, _, _ = cli
    assert_user_error(invoke("run", "--config", str(tmp_path / "nope.toml")), "does not exist")


@pytest.fixture
def scaled(monkeypatch):
    """Register the new pooler and rebuild the CLI, as a fresh process with it in the registry would;
    sweep workers register it in their initializer. Everything is restored afterwards."""
    import importlib

    import dinbench.cli
    import scaled_pooler
    from dinbench import sweep

    scaled_pooler.register()
    monkeypatch.setattr(sweep, "_init_worker", scaled_pooler.init_worker)
    importlib.reload(dinbench.cli)
    yield
    del poolers.REGISTRY["scaled"]
    importlib.reload(dinbench.cli)


def test_a_new_pooler_with_an_option_runs_through_run_sweep_and_a_config_file(scaled, cli, tiny_data_dir, tmp_path):
    from typer.testing import CliRunner

    from dinbench.cli import app

    def go(*argv, results):
        out = CliRunner().invoke(app, [*argv, *TINY, "--data-dir", str(tiny_data_dir), "--results-dir", str(results)])
        assert out.exit_code == 0, out.output
        return _records(results)

    (rec,) = go("run", "--pooler", "scaled", "--scale", "2.5", results=tmp_path / "r1")
    assert rec["config"]["pooler_options"] == {"scale": 2.5} and rec["status"] == "completed"
    recs = go("sweep", "--pooler", "scaled,average", "--scale", "0.5", "--workers", "1", results=tmp_path / "r2")
    assert {r["pooler"]: r["config"]["pooler_options"] for r in recs} == {"scaled": {"scale": 0.5}, "average": {}}
    exp = tmp_path / "exp.toml"
    exp.write_text('pooler = "scaled"\n[pooler_options.scaled]\nscale = 3.0\n')
    (rec,) = go("run", "--config", str(exp), results=tmp_path / "r3")
    assert rec["config"]["pooler_options"] == {"scale": 3.0}
    help_text = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "250"}).stdout
    assert "--scale" in help_text and "factor on the mean" in help_text
    bad = CliRunner().invoke(app, ["run", "--pooler", "scaled", "--scale", "0", "--data-dir", str(tiny_data_dir)])
    assert_user_error(bad, "--scale must be a positive number")
