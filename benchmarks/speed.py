"""Speed benchmark: dinbench `din` against DeepCTR-Torch's `DIN` on the same amazon-beauty samples.

    python benchmarks/speed.py [--data-dir DIR] [--threads N] [--epochs 2] [--no-peer] [--poolers LIST]
                               [--interleave 8] [--seeds 1] [--peer-malloc same]

One run prints, for dinbench `din` (default variant `din:none`) and DeepCTR-Torch `DIN` trained on
the same prepared samples with the same sizes (embedding 32 per field, max length 50, batch 1,024,
Adam lr 1e-3, 2 epochs, no model selection: both are scored after their last epoch):
training rows/s and their ratio, test AUC and GAUC (both with dinbench.metrics), and each one's
peak RSS (every measurement runs in its own child process, which reports its own peak). Then
training rows/s of every dinbench pooler (one epoch each), the time to evaluate the test split
(scoring + AUC + GAUC), and the model-FLOP utilisation of `din` against a matmul peak measured here,
with the speed ratio split into how many fewer FLOPs dinbench computes (FLOP ratio) and how fast it
runs them against DeepCTR (model-FLOP throughput ratio): ``flop_split``.

``--interleave R`` (default 8; 0 turns it off): the two models train side by side in two child
processes that take turns: each turn one of them trains the next 1/R of an epoch (whole batches of
the same epoch order) while the other waits, and the first to go alternates. Each model's rate is then its rows over its summed turn times,
measured over the same minutes of the same machine, and the per-turn ratios show the spread. Without
it the models train one after the other (dinbench ~25 s, DeepCTR ~3 min here), and a shared
machine's speed, which moved by 20-30 % between neighbouring processes here, moves the ratio with it.
DeepCTR then runs its ``fit`` once per turn (one epoch over that turn's rows, taken in the order its
one ``fit`` would have drawn: the same batches in the same order, hence the same test metrics); each
``fit`` converts its turn's inputs to one tensor, which one ``fit`` does once for all epochs (a few
tenths of a second in ~3 minutes). Picking the turn's rows out of the inputs is not timed.

``--peer-malloc same`` (the default): DeepCTR-Torch's process keeps the memory a step frees for the next,
as every dinbench training process does (dinbench.allocator, glibc's mmap and trim thresholds), so the
ratio compares the two models rather than their allocator settings (the peer gains from them as well);
``default`` leaves the peer at glibc's own behaviour, as it runs for its users.

Setup it does by itself:
- amazon-beauty is imported from ``--interactions`` (default: ../shared/data/amazon-beauty/
  interactions.csv beside the repository) into ``--data-dir`` when it is not prepared there yet.
- DeepCTR-Torch is a benchmark-only peer, never a dinbench dependency: when ``deepctr_torch`` is not
  importable it is installed with ``pip install --no-deps --target <cache>`` (its metadata asks for an
  unpinned torch, which would replace the pinned one), together with the one dependency it imports
  that dinbench does not have (tqdm). Its import-time version check (an HTTP request to PyPI) is
  neutralised with a stub ``requests`` module, so the benchmark makes no network call.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PEER = {"deepctr-torch": "0.3.0", "tqdm": "4.70.1"}
DEFAULT_DATA = Path(tempfile.gettempdir()) / "dinbench-speed" / "datasets"
DEFAULT_PEER_DIR = Path(tempfile.gettempdir()) / "dinbench-speed" / "peer"
sys.path.insert(0, str(HERE))
from peak_rss import parse_or_serve, worker  # noqa: E402

SIZES = dict(embedding_dim=32, max_len=50, batch_size=1024, lr=1e-3)


# ----------------------------------------------------------------------------- parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help="dinbench data folder (amazon-beauty is imported here if missing)")
    ap.add_argument("--interactions", type=Path, default=REPO.parent / "shared" / "data" / "amazon-beauty" / "interactions.csv")
    ap.add_argument("--peer-dir", type=Path, default=DEFAULT_PEER_DIR, help="where DeepCTR-Torch is installed if it is not importable")
    ap.add_argument("--threads", type=int, default=None, help="torch threads for every measurement (default: dinbench's default)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--poolers", default="all", help="pooler sweep: 'all' (every pooler, default variant) or a comma list; '' skips it")
    ap.add_argument("--no-peer", action="store_true", help="skip DeepCTR-Torch")
    ap.add_argument("--peer-malloc", choices=("same", "default"), default="same",
                    help="same (default): DeepCTR-Torch's process keeps freed memory as dinbench's does "
                         "(dinbench.allocator), so the ratio compares the models; default: glibc's own behaviour, "
                         "as DeepCTR-Torch runs for its users")
    ap.add_argument("--seeds", type=int, default=1,
                    help="repeat the comparison with seeds 0..N-1 (both models' initialisation and batch order) and "
                         "print each seed's figures and the mean and spread of the AUC difference")
    ap.add_argument("--interleave", type=int, default=8, metavar="R",
                    help="train both models in turns, 1/R epoch each per turn, in two processes (same host "
                         "conditions; default 8); 0: one after the other")
    args = parse_or_serve(ap, WORKERS)
    if args is None:  # a measurement child: done
        return

    sys.path.insert(0, str(REPO))
    from dinbench.runtime import default_threads

    threads = args.threads or default_threads()
    ensure_dataset(args.data_dir, args.interactions)
    job = dict(data_dir=str(args.data_dir), threads=threads, epochs=args.epochs, peer_malloc=args.peer_malloc, **SIZES)
    load = os.getloadavg()
    print(f"dinbench speed benchmark, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {os.cpu_count()} CPUs, "
          f"torch threads {threads}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"amazon-beauty from {args.data_dir}; embedding {SIZES['embedding_dim']} per field, max length "
          f"{SIZES['max_len']}, batch {SIZES['batch_size']:,}, Adam lr {SIZES['lr']:g}, {args.epochs} epochs")
    print(allocator_line(args.peer_malloc) + "\n")

    peak = child("peak", job)
    runs = [compare({**job, "seed": seed}, args) for seed in range(args.seeds)]  # [(ours, peer or None)]
    ours, peer = runs[0]

    print("| model | seed | train rows/s | test AUC | test GAUC | peak RSS |")
    print("|---|---|---|---|---|---|")
    for name, who in (("dinbench din (din:none)", 0), ("DeepCTR-Torch DIN", 1)):
        for seed, pair in enumerate(runs):
            r = pair[who]
            if r is not None:
                print(f"| {name} | {seed} | {r['rows_per_s']:,.0f} | {r['auc']:.4f} | {r['gauc']:.4f} | "
                      f"{r['peak_rss_mb']:,.0f} MB |")
    if peer is not None:
        print()
        for seed, (o, p) in enumerate(runs):
            print(f"{f'seed {seed}: ' if len(runs) > 1 else ''}speed ratio dinbench / DeepCTR: "
                  f"{o['rows_per_s'] / p['rows_per_s']:.1f}x (target >= 10x); test AUC difference "
                  f"{o['auc'] - p['auc']:+.4f} (target >= -0.002), GAUC {o['gauc'] - p['gauc']:+.4f}")
        if len(runs) > 1:
            print(seeds_summary(runs))
    print(f"\nevaluation of the test split ({ours['test_rows']:,} rows, eval batch {ours['eval_batch']:,}): "
          f"{ours['eval_seconds']:.2f} s (scoring {ours['score_seconds']:.2f} s + AUC and GAUC "
          f"{ours['metric_seconds']:.2f} s; target < 2 s), after importing scikit-learn's metrics once "
          f"({ours['import_seconds']:.2f} s, not counted: a process pays it at its first evaluation)")

    flops = ours["train_flops"]
    achieved = flops / ours["train_seconds"]
    print(f"\nmodel-FLOP utilisation of din: {achieved / 1e9:.1f} GFLOP/s of model FLOPs / measured fp32 matmul peak "
          f"{peak['gflops']:.1f} GFLOP/s ({threads} threads) = {achieved / 1e9 / peak['gflops']:.1%}")
    print(f"  model FLOPs per training row: {flops / ours['train_rows_seen']:,.0f} (matmul multiply-adds x 2, forward x 3 "
          f"for forward + backward, real history positions only: mean {ours['mean_hist_len']:.2f} per row); the same "
          f"model computed naively over [q, k, q-k, q*k] at all {SIZES['max_len']} padded positions would need "
          f"{ours['naive_flops_per_row']:,.0f}")
    if peer is not None:
        split = flop_split(ours, peer)
        print(f"  DeepCTR-Torch DIN computes that naive form (every padded position, the first layer over all 4D "
              f"features): {split['peer_gflops']:.1f} GFLOP/s of its model FLOPs ({split['peer_gflops'] / peak['gflops']:.1%} "
              f"of the peak).\n  speed ratio {split['speed_ratio']:.2f}x = FLOP ratio {split['flop_ratio']:.2f}x (its FLOPs "
              f"per row / dinbench's) x model-FLOP throughput ratio {split['throughput_ratio']:.2f} (dinbench's GFLOP/s / "
              f"DeepCTR's); 10x needs a throughput ratio of {10 / split['flop_ratio']:.2f}")

    if args.poolers:
        sweep = child("poolers", {**job, "poolers": args.poolers})
        print("\n| pooler | train rows/s (1 epoch) |")
        print("|---|---|")
        for spec, rate in sweep["rates"].items():
            print(f"| {spec} | {rate:,.0f} |")
        print(f"(peak RSS of the sweep process {sweep['peak_rss_mb']:,.0f} MB)")
    load = os.getloadavg()
    print(f"\nload average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


def allocator_line(peer_malloc: str) -> str:
    """Which C allocator settings each side trains under (dinbench.allocator, ``--peer-malloc``)."""
    from dinbench import allocator

    if allocator.user_tuned(os.environ):
        return "C allocator: your malloc settings (GLIBC_TUNABLES / MALLOC_* / LD_PRELOAD), the same for both"
    if peer_malloc == "same":
        return ("C allocator: both processes keep the memory a step frees for the next (dinbench.allocator, as every "
                "dinbench training process does; --peer-malloc default leaves DeepCTR-Torch's at glibc's defaults)")
    return ("C allocator: dinbench keeps the memory a step frees for the next (dinbench.allocator); DeepCTR-Torch "
            "trains under glibc's defaults, as it runs for its users (--peer-malloc default)")


def seeds_summary(runs: list[tuple[dict, dict]]) -> str:
    """One line over the seeds' (dinbench, DeepCTR) results: the mean and range of the speed ratio, and the
    mean ± sd of each model's test AUC and of their difference."""
    ours = [o["auc"] for o, _ in runs]
    peer = [p["auc"] for _, p in runs]
    diffs = [a - b for a, b in zip(ours, peer)]
    ratios = [o["rows_per_s"] / p["rows_per_s"] for o, p in runs]
    sd = statistics.stdev
    return (f"over {len(runs)} seeds: speed ratio mean {statistics.mean(ratios):.1f}x (range {min(ratios):.1f}-"
            f"{max(ratios):.1f}x); test AUC dinbench {statistics.mean(ours):.4f} ± {sd(ours):.4f}, DeepCTR "
            f"{statistics.mean(peer):.4f} ± {sd(peer):.4f} (mean ± sd); difference {statistics.mean(diffs):+.4f} "
            f"± {sd(diffs):.4f}")


def compare(job: dict, args) -> tuple[dict, dict | None]:
    """One comparison (one seed): dinbench's result and the peer's (None with --no-peer)."""
    if args.interleave and not args.no_peer:
        return interleaved({**job, "peer_path": ensure_peer(args.peer_dir), "turns": args.interleave})
    ours = child("dinbench", job)
    return ours, (None if args.no_peer else child("peer", {**job, "peer_path": ensure_peer(args.peer_dir)}))


def child(name: str, job: dict) -> dict:
    """Run one measurement of this script in a fresh process (its own peak RSS); returns its result."""
    return worker(__file__, name, job)


class Turns:
    """A measurement child that trains in turns (``--interleave``): it prints ``ready`` once set up; each
    ``go`` on its stdin trains its next turn and answers ``took SECONDS ROWS``; ``end`` makes it score its
    model and print its RESULT line (as ``worker``'s children do). Other lines it prints are ignored."""

    def __init__(self, name: str, job: dict) -> None:
        from peak_rss import repo_env

        self.name = name
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", name, "--job",
                                      json.dumps(job)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=repo_env(), cwd=REPO)
        self._read("ready")

    def _read(self, prefix: str) -> str:
        for line in self.proc.stdout:
            if line.startswith(prefix):
                return line[len(prefix):].strip()
        sys.exit(f"{self.name} stopped (exit {self.proc.wait()}) before printing {prefix!r}")

    def turn(self) -> tuple[float, int]:
        """Train one turn; (seconds, rows)."""
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        seconds, rows = self._read("took ").split()
        return float(seconds), int(rows)

    def finish(self) -> dict:
        self.proc.stdin.write("end\n")
        self.proc.stdin.close()
        result = json.loads(self._read("RESULT "))
        self.proc.wait()
        return result


def interleaved(job: dict) -> tuple[dict, dict]:
    """Both models in turns (``--interleave``); their results, with per-turn rates printed."""
    ours, peer = Turns("dinbench-turns", job), Turns("peer-turns", job)
    turns, ratios, seconds = job["turns"] * job["epochs"], [], {"ours": 0.0, "peer": 0.0}
    print(f"interleaved: {turns} turns each (1/{job['turns']} epoch per turn), the first to go alternating", flush=True)
    for t in range(turns):
        rate = {}
        for who, proc in (("ours", ours), ("peer", peer)) if t % 2 == 0 else (("peer", peer), ("ours", ours)):
            took, rows = proc.turn()
            seconds[who] += took
            rate[who] = rows / took
        ratios.append(rate["ours"] / rate["peer"])
    result_ours, result_peer = ours.finish(), peer.finish()
    for r, who in ((result_ours, "ours"), (result_peer, "peer")):
        r["rows_per_s"] = r["train_rows_seen"] / seconds[who]
        r["train_seconds"] = seconds[who]
    print(f"per-turn speed ratios: median {statistics.median(ratios):.1f}x, range {min(ratios):.1f}-{max(ratios):.1f}x "
          f"over {len(ratios)} turns\n")
    return result_ours, result_peer


def ensure_dataset(data_dir: Path, interactions: Path) -> None:
    if (data_dir / "amazon-beauty" / "manifest.json").is_file():
        return
    if not interactions.is_file():
        sys.exit(f"amazon-beauty is not prepared in {data_dir} and {interactions} does not exist; pass --interactions")
    print(f"importing {interactions} into {data_dir} ...", flush=True)
    subprocess.run([sys.executable, "-m", "dinbench.cli", "import", str(interactions), "--name", "amazon-beauty",
                    "--data-dir", str(data_dir)], check=True, cwd=REPO, stdout=subprocess.DEVNULL)


def ensure_peer(peer_dir: Path) -> str:
    """A folder to put on sys.path for deepctr_torch ('' when it is importable already)."""
    probe = "import sys, types; sys.modules['requests'] = types.ModuleType('requests'); import deepctr_torch"
    if subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0:
        return ""
    if not (peer_dir / "deepctr_torch").is_dir():
        print(f"installing the peer (benchmark only) into {peer_dir}: pip install --no-deps --target ... "
              + " ".join(f"{k}=={v}" for k, v in PEER.items()), flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(peer_dir),
                        *(f"{k}=={v}" for k, v in PEER.items())], check=True)
    return str(peer_dir)


# ----------------------------------------------------------------------------- workers (child processes)


def _setup(job: dict):
    import torch

    torch.set_num_threads(job["threads"])
    from dinbench.batches import make_store
    from dinbench.prepared.contract import load

    prepared = load(Path(job["data_dir"]), job.get("dataset", "amazon-beauty"))
    if job.get("train_rows"):  # a slice: the first rows of the train split (whole users, as prepared)
        prepared.splits["train"] = prepared.splits["train"].iloc[: job["train_rows"]].reset_index(drop=True)
    store = make_store(prepared, job.get("device", "cpu"))
    train = store.samples(prepared.splits["train"], job["max_len"])
    test = store.samples(prepared.splits["test"], job["max_len"])
    return prepared, store, train, test


def _train_dinbench(spec: str, job: dict, prepared, store, train, epochs: int, seed: int = 0) -> tuple:
    """dinbench's own training step (as dinbench.train.fit runs it) for ``epochs``; returns (model, seconds)."""
    run = _DinbenchTraining(spec, job, prepared, seed)
    seconds = 0.0
    for _ in range(epochs):
        t0 = time.perf_counter()
        run.train(store, train, run.epoch_batches(len(train)))
        seconds += time.perf_counter() - t0
    return run.model, seconds, run.cfg


class _DinbenchTraining:
    """A dinbench model, its optimizer and its epoch order, trained batch by batch as dinbench.train.fit does."""

    def __init__(self, spec: str, job: dict, prepared, seed: int = 0) -> None:
        import numpy as np
        import torch
        from torch import nn

        from dinbench import allocator
        from dinbench.config import RunConfig
        from dinbench.model.build import build_model
        from dinbench.optim import make_optimizer

        allocator.keep_freed_memory()  # as dinbench.train.Trainer does
        self.cfg = RunConfig(dataset="amazon-beauty", pooler=spec, seed=seed, embedding_dim=job["embedding_dim"],
                             max_len=job["max_len"], batch_size=job["batch_size"], lr=job["lr"])
        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.model = build_model(self.cfg, prepared)
        self.optimizer, self.loss_fn = make_optimizer(self.cfg.optimizer, self.model, self.cfg.lr), nn.BCEWithLogitsLoss()

    def epoch_batches(self, rows: int) -> list:
        from dinbench.batches import batch_indices

        return batch_indices(rows, self.cfg.batch_size, self.rng)

    def train(self, store, train, batches) -> None:
        self.model.train()
        for idx in batches:
            batch = store.batch(train, idx, padded=self.model.needs_padded)  # as Trainer.step asks for it
            logits, _ = self.model(batch)
            loss = self.loss_fn(logits, batch.label)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()


def _turns(epoch_batches, turns: int, train_turn, prepare=None) -> float:
    """The child's side of ``Turns``: print ``ready``, then per ``go`` train the next 1/``turns`` of an epoch
    (``epoch_batches()`` gives an epoch's batches of row indices; ``train_turn(prepare(batches))`` trains
    them, and only it is timed) and print ``took SECONDS ROWS``; stop at ``end``. Returns the summed
    training seconds."""
    import numpy as np

    print("ready", flush=True)
    total, pending = 0.0, []
    for line in sys.stdin:
        if line.strip() != "go":
            break
        if not pending:  # a new epoch: its batches in ``turns`` consecutive parts
            batches = epoch_batches()
            pending = [[batches[i] for i in part] for part in np.array_split(np.arange(len(batches)), turns)]
        part = pending.pop(0)
        inputs = part if prepare is None else prepare(part)
        t0 = time.perf_counter()
        train_turn(inputs)
        took = time.perf_counter() - t0
        total += took
        print(f"took {took:.6f} {sum(len(b) for b in part)}", flush=True)
    return total


def flop_split(ours: dict, peer: dict) -> dict:
    """The speed ratio as (FLOP ratio) x (model-FLOP throughput ratio), from seed 0's figures.

    DeepCTR-Torch's DIN computes the model as the formula reads (``naive_flops_per_row``: the first layer
    over [q, k, q-k, q*k] at every padded position); dinbench's ``din`` computes ``train_flops`` per row seen.
    speed_ratio == flop_ratio * throughput_ratio: how much of the speed comes from doing less, and how much
    from doing it faster per FLOP."""
    ours_flops_per_row = ours["train_flops"] / ours["train_rows_seen"]
    ours_gflops = ours["rows_per_s"] * ours_flops_per_row / 1e9
    peer_gflops = peer["rows_per_s"] * ours["naive_flops_per_row"] / 1e9
    return dict(speed_ratio=ours["rows_per_s"] / peer["rows_per_s"], ours_gflops=ours_gflops, peer_gflops=peer_gflops,
                flop_ratio=ours["naive_flops_per_row"] / ours_flops_per_row, throughput_ratio=ours_gflops / peer_gflops)


def din_flops_per_row(hist_len: float, d: int, hidden: tuple[int, ...], mlp: tuple[int, ...], naive_len: int | None = None) -> float:
    """Matmul FLOPs (2 per multiply-add) of one training row of dinbench `din`, forward + backward (3x forward).

    Per row: the first layer's q part (D x H1) and the prediction MLP over [q, pooled] (2D -> 200 -> 80 -> 1).
    Per real history position: the split first layer's k and q*k parts (2 x D x H1), the unit's remaining
    layers (H1 -> H2 -> 1) and the weighted sum (D). ``naive_len``: the same model computed as the
    formula reads, the first layer over all 4D features at every one of ``naive_len`` positions.
    """
    h1 = hidden[0]
    rest = sum(a * b for a, b in zip(hidden, (*hidden[1:], 1)))
    sizes = (2 * d, *mlp, 1)
    per_row_mac = sum(a * b for a, b in zip(sizes, sizes[1:]))
    if naive_len is None:
        per_row_mac += d * h1
        per_pos_mac = 2 * d * h1 + rest + d
        positions = hist_len
    else:
        per_pos_mac = 4 * d * h1 + rest + d
        positions = naive_len
    return 3 * 2 * (per_row_mac + positions * per_pos_mac)


def work_dinbench(job: dict) -> dict:
    prepared, store, train, test = _setup(job)
    model, seconds, cfg = _train_dinbench("din", job, prepared, store, train, job["epochs"], job.get("seed", 0))
    return _score_dinbench(model, cfg, store, train, test, job, seconds)


def work_dinbench_turns(job: dict) -> dict:
    """``work_dinbench`` in turns (``--interleave``; see ``Turns``)."""
    prepared, store, train, test = _setup(job)
    run = _DinbenchTraining("din", job, prepared, job.get("seed", 0))
    seconds = _turns(lambda: run.epoch_batches(len(train)), job["turns"], lambda part: run.train(store, train, part))
    return _score_dinbench(run.model, run.cfg, store, train, test, job, seconds)


def _score_dinbench(model, cfg, store, train, test, job: dict, seconds: float) -> dict:
    """The test metrics and evaluation times of a trained dinbench model, with its training figures."""
    import numpy as np

    from dinbench.metrics import evaluate
    from dinbench.runtime import predict

    t_import = time.perf_counter()
    import sklearn.metrics  # noqa: F401  once per process (dinbench.metrics imports it lazily): not evaluation time
    import_seconds = time.perf_counter() - t_import
    t0 = time.perf_counter()
    probs = predict(model, store, test, cfg.eval_batch_size, "cpu")
    t1 = time.perf_counter()
    metrics = evaluate(test.user, test.label, probs)
    t2 = time.perf_counter()
    mean_len = float(np.mean(train.hist_len))
    d = 2 * cfg.embedding_dim
    unit = cfg.pooler_options.get("attention_hidden", (80, 40))
    per_row = din_flops_per_row(mean_len, d, unit, cfg.mlp_hidden)
    rows = len(train) * job["epochs"]
    return dict(rows_per_s=rows / seconds, train_seconds=seconds, train_rows_seen=rows, auc=metrics["auc"],
                gauc=metrics["gauc"], test_rows=len(test), eval_batch=cfg.eval_batch_size,
                eval_seconds=t2 - t0, score_seconds=t1 - t0, metric_seconds=t2 - t1, import_seconds=import_seconds,
                mean_hist_len=mean_len,
                train_flops=per_row * rows,
                naive_flops_per_row=din_flops_per_row(mean_len, d, unit, cfg.mlp_hidden, naive_len=job["max_len"]))


def work_peak(job: dict) -> dict:
    """fp32 matmul peak of this machine at this thread count: best of several 2048^3 products."""
    import torch

    torch.set_num_threads(job["threads"])
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = float("inf")
    for _ in range(8):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return dict(gflops=2 * n**3 / best / 1e9)


def work_poolers(job: dict) -> dict:
    from dinbench import poolers

    prepared, store, train, _ = _setup(job)
    specs = list(poolers.REGISTRY) if job["poolers"] == "all" else [s.strip() for s in job["poolers"].split(",") if s.strip()]
    rates = {}
    for spec in specs:
        _, seconds, cfg = _train_dinbench(spec, job, prepared, store, train, 1)
        rates[cfg.pooler] = len(train) / seconds
    return dict(rates=rates)


def work_peer(job: dict) -> dict:
    """DeepCTR-Torch DIN on the same samples: dense [N, max_len] histories, as its API takes them.

    ``job``: data_dir, threads, epochs, embedding_dim, max_len, batch_size, lr, peer_path; optional
    dataset (default amazon-beauty), train_rows (a slice of the train split), device (default cpu),
    seed (default 0: torch's seed, hence the initialisation and the batch order)."""
    model, x_train, y_train, score = _peer(job)
    t0 = time.perf_counter()
    model.fit(x_train, y_train, batch_size=job["batch_size"], epochs=job["epochs"], verbose=0)
    seconds = time.perf_counter() - t0
    rows = len(y_train) * job["epochs"]
    return dict(rows_per_s=rows / seconds, train_seconds=seconds, train_rows_seen=rows, **score())


def work_peer_turns(job: dict) -> dict:
    """``work_peer`` in turns (``--interleave``; see ``Turns``): each turn is one ``fit`` of one epoch over
    that turn's rows, in the order DeepCTR's own ``fit`` would have drawn for the epoch, so that the
    peer trains on the same batches in the same order as in one ``fit`` (and reaches the same metrics)."""
    import numpy as np
    import torch

    model, x_train, y_train, score = _peer(job)
    size = job["batch_size"]

    def epoch_batches() -> list:
        # what one fit's DataLoader draws from torch's global generator at an epoch's start: its iterator's
        # base seed, then its RandomSampler's seed for the epoch's permutation
        torch.empty((), dtype=torch.int64).random_()
        seed = int(torch.empty((), dtype=torch.int64).random_().item())
        order = torch.randperm(len(y_train), generator=torch.Generator().manual_seed(seed)).numpy()
        return [order[i:i + size] for i in range(0, len(order), size)]

    def prepare(part: list) -> tuple:  # the turn's rows of the inputs one fit was given (not timed)
        rows = np.concatenate(part)
        return {k: v[rows] for k, v in x_train.items()}, y_train[rows]

    def train_turn(inputs: tuple) -> None:
        state = torch.get_rng_state()  # this turn's own DataLoader draws a base seed, which one fit would not
        model.fit(*inputs, batch_size=size, epochs=1, verbose=0, shuffle=False)
        torch.set_rng_state(state)

    seconds = _turns(epoch_batches, job["turns"], train_turn, prepare)
    rows = len(y_train) * job["epochs"]
    return dict(rows_per_s=rows / seconds, train_seconds=seconds, train_rows_seen=rows, **score())


def _peer(job: dict) -> tuple:
    """DeepCTR-Torch's DIN built for the job, its training inputs and labels, and ``score()``: its test metrics."""
    import types

    if job["peer_path"]:
        sys.path.insert(0, job["peer_path"])
    stub = types.ModuleType("requests")  # deepctr_torch checks PyPI for a newer version at import: no network here
    stub.codes = types.SimpleNamespace(ok=200)
    stub.get = lambda *a, **k: types.SimpleNamespace(status_code=0, text="")
    sys.modules["requests"] = stub
    import numpy as np
    import torch
    from deepctr_torch.inputs import SparseFeat, VarLenSparseFeat
    from deepctr_torch.models import DIN

    from dinbench.metrics import evaluate

    prepared, store, train, test = _setup(job)
    if job.get("peer_malloc", "same") == "same":  # the allocator settings dinbench's process trains under
        from dinbench import allocator

        allocator.keep_freed_memory()
    seed = job.get("seed", 0)
    torch.manual_seed(seed)
    L, e = job["max_len"], job["embedding_dim"]

    def inputs(s) -> dict:
        lens = s.hist_len
        offs = np.arange(L)
        mask = offs[None, :] < lens[:, None]
        rows = np.where(mask, s.hist_start[:, None] + offs[None, :], 0)
        beh_item, beh_cate = (prepared.behaviours[c].to_numpy(np.int64) for c in ("item", "category"))
        return {"item": s.item.astype(np.int64), "cate": s.category.astype(np.int64),
                "hist_item": np.where(mask, beh_item[rows], 0), "hist_cate": np.where(mask, beh_cate[rows], 0),
                "seq_length": lens.astype(np.int64)}

    n_items, n_cats = prepared.n_items + 1, prepared.n_categories + 1
    columns = [
        SparseFeat("item", n_items, embedding_dim=e), SparseFeat("cate", n_cats, embedding_dim=e),
        VarLenSparseFeat(SparseFeat("hist_item", n_items, embedding_dim=e, embedding_name="item"), maxlen=L, length_name="seq_length"),
        VarLenSparseFeat(SparseFeat("hist_cate", n_cats, embedding_dim=e, embedding_name="cate"), maxlen=L, length_name="seq_length"),
    ]
    # the sizes of dinbench's din: prediction MLP 200-80 PReLU, activation unit 80-40 sigmoid, unnormalised
    # weights, embeddings N(0, 0.1) (DeepCTR's init_std sets only the embeddings), no L2
    model = DIN(columns, ["item", "cate"], dnn_hidden_units=(200, 80), dnn_activation="prelu",
                att_hidden_size=(80, 40), att_activation="sigmoid", att_weight_normalization=False,
                l2_reg_embedding=0.0, init_std=0.1, seed=seed, device=job.get("device", "cpu"))
    model.compile(torch.optim.Adam(model.parameters(), lr=job["lr"]), "binary_crossentropy")

    def score() -> dict:
        probs = model.predict(inputs(test), batch_size=4096).reshape(-1)
        metrics = evaluate(test.user, test.label, probs)
        return dict(auc=metrics["auc"], gauc=metrics["gauc"])

    return model, inputs(train), train.label.astype(np.float32), score


WORKERS = {"dinbench": work_dinbench, "peer": work_peer, "peak": work_peak, "poolers": work_poolers,
           "dinbench-turns": work_dinbench_turns, "peer-turns": work_peer_turns}

if __name__ == "__main__":
    main()
