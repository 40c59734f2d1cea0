"""Device benchmark: every pooler's training rows/s at batch 1,024 and 8,192, the device's busy share,
evaluation rows/s, peak device memory, and DeepCTR-Torch DIN on the same device in the same run.

    python benchmarks/gpu.py [--device auto] [--quick] [--poolers all] [--batch-sizes 1024,8192]
                             [--dataset amazon-beauty] [--train-rows N] [--epochs 2]
                             [--peer-dir DIR | --no-peer] [--optimizer NAME] [--compile MODE]

The first line printed names the device. What is measured, in one child process for dinbench (one
CUDA context) and another for the peer:

- **training rows/s** on the train split (as the peer): for each pooler and batch size, one untimed warm-up epoch of dinbench's own
  loop (``dinbench.train.Trainer.train_epoch``: batch building, step, everything a run does), then
  ``--epochs`` timed epochs, and more until ``--min-seconds`` have passed (NVML's utilisation is an
  average over its own sample period, up to a second, so a shorter window mixes in the idle time
  around it), the clock read after ``torch.cuda.synchronize()``;
- **busy share** during the timed epochs: on CUDA the GPU's utilisation (the share of time a kernel
  was running) sampled every 50 ms by ``torch.cuda.utilization`` (NVML), or by ``nvidia-smi -lms 50``
  when pynvml is missing; on CPU the process's CPU time / wall time / torch threads;
- **evaluation rows/s**: ``dinbench.runtime.predict`` over the training samples at ``--eval-batch``
  rows per batch (best of 3 passes);
- **peak memory**: ``torch.cuda.max_memory_allocated`` over training and evaluation (reset for each
  pooler and batch size); on CPU the process's peak RSS so far (cumulative over the measurements);
- **the peer**: DeepCTR-Torch 0.3.0 ``DIN`` on the same samples and device, with
  ``benchmarks/speed.py``'s machinery (installed with ``pip --no-deps --target --peer-dir`` when not
  importable; offline, point ``--peer-dir`` at a folder where it was installed that way, which can be
  carried to the machine), one epoch at ``--peer-batch``; ratio = dinbench ``din`` at that batch / peer.

Targets (printed met/missed; they are GPU targets): one ``din`` run >= 3 M rows/s at batch 8,192 and
>= 1 M at 1,024, busy >= 70 %, >= 50x DeepCTR DIN, evaluation >= 10 M rows/s.
``--quick`` (about 3 minutes on an H200): poolers average and din, one timed epoch.
Data: a prepared dataset (``--dataset``, default amazon-beauty, imported from ``--interactions``
when missing; ``synthetic`` is generated offline); ``--train-rows N`` trains on the first N training
rows only (a slice, for a small machine).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import speed  # noqa: E402  (the peer's installation and its worker)
from peak_rss import REPO, effective, peak_rss_mb, run_options, run_overrides, parse_or_serve, worker  # noqa: E402

TARGETS = dict(din_8192=3e6, din_1024=1e6, busy=0.70, peer_ratio=50.0, eval=10e6)
QUICK_POOLERS = "average,din"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="auto (cuda when available), cuda, cpu")
    ap.add_argument("--quick", action="store_true", help=f"poolers {QUICK_POOLERS}, one timed epoch (~3 min on an H200)")
    ap.add_argument("--poolers", default=None, help="'all' (default) or a comma list of pooler specs")
    ap.add_argument("--batch-sizes", default="1024,8192")
    ap.add_argument("--epochs", type=int, default=None, help="timed epochs after the warm-up one (default 2; --quick 1)")
    ap.add_argument("--min-seconds", type=float, default=3.0, help="time at least this long per pooler and batch size (whole epochs)")
    ap.add_argument("--eval-batch", type=int, default=65536)
    ap.add_argument("--dataset", default="amazon-beauty")
    ap.add_argument("--data-dir", type=Path, default=speed.DEFAULT_DATA)
    ap.add_argument("--interactions", type=Path, default=REPO.parent / "shared" / "data" / "amazon-beauty" / "interactions.csv")
    ap.add_argument("--train-rows", type=int, default=0, help="train on the first N training rows only (0: all)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: dinbench's default)")
    ap.add_argument("--peer-dir", type=Path, default=speed.DEFAULT_PEER_DIR,
                    help="DeepCTR-Torch installed with pip --no-deps --target (installed there when missing)")
    ap.add_argument("--peer-batch", type=int, default=1024)
    ap.add_argument("--no-peer", action="store_true")
    run_options(ap)
    args = parse_or_serve(ap, {"measure": work_measure})
    if args is None:  # a measurement child: done
        return

    sys.path.insert(0, str(REPO))
    import torch

    from dinbench.runtime import default_threads

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    overrides = run_overrides(args, device)
    name = torch.cuda.get_device_name(0) if device == "cuda" else f"CPU ({os.cpu_count()} cores)"
    print(f"device: {device} = {name}; torch {torch.__version__}; {time.strftime('%Y-%m-%d %H:%M:%S %Z')}", flush=True)
    poolers = args.poolers or (QUICK_POOLERS if args.quick else "all")
    epochs = args.epochs or (1 if args.quick else 2)
    threads = args.threads or default_threads()
    if args.dataset == "amazon-beauty":
        speed.ensure_dataset(args.data_dir, args.interactions)
    job = dict(data_dir=str(args.data_dir), dataset=args.dataset, train_rows=args.train_rows, device=device,
               threads=threads, poolers=poolers, batch_sizes=[int(b) for b in args.batch_sizes.split(",")],
               epochs=epochs, min_seconds=args.min_seconds, eval_batch=args.eval_batch, overrides=overrides)
    load = os.getloadavg()
    print(f"{args.dataset}{f' (first {args.train_rows:,} training rows)' if args.train_rows else ''} from {args.data_dir}; "
          f"optimizer {effective(overrides, 'optimizer')}{', compile ' + overrides['compile'] if overrides.get('compile') else ''}; "
          f"1 warm-up + {epochs} timed epoch(s) (more until {args.min_seconds:g} s); torch threads {threads}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n",
          flush=True)

    ours = worker(__file__, "measure", job)
    memory = "peak device memory" if device == "cuda" else "process peak RSS so far"
    print(f"| pooler | batch | train rows/s | busy | eval rows/s (batch {args.eval_batch:,}) | {memory} |")
    print("|---|---|---|---|---|---|")
    for r in ours["runs"]:
        busy = f"{r['busy']:.0%}" if r["busy"] is not None else "n/a"
        print(f"| {r['pooler']} | {r['batch']:,} | {r['rows_per_s']:,.0f} | {busy} | {r['eval_rows_per_s']:,.0f} | "
              f"{r['memory_mb']:,.0f} MB |")
    print(f"({ours['train_rows']:,} training rows per epoch; busy = {ours['busy_how']})", flush=True)

    peer = None
    if not args.no_peer:
        peer_path = speed.ensure_peer(args.peer_dir)
        peer_job = dict(data_dir=str(args.data_dir), dataset=args.dataset, train_rows=args.train_rows, device=device,
                        threads=threads, epochs=1, peer_path=peer_path, **{**speed.SIZES, "batch_size": args.peer_batch})
        peer = worker(speed.__file__, "peer", peer_job)
        print(f"\nDeepCTR-Torch DIN on {device}, batch {args.peer_batch:,}, 1 epoch: {peer['rows_per_s']:,.0f} rows/s "
              f"(test AUC {peer['auc']:.4f}; peak RSS {peer['peak_rss_mb']:,.0f} MB)")
    print_targets(ours["runs"], peer, args.peer_batch, device)


def print_targets(runs: list[dict], peer: dict | None, peer_batch: int, device: str) -> None:
    din = {r["batch"]: r for r in runs if r["pooler"].split(":")[0] == "din"}
    print(f"\ntargets ({'GPU targets, measured here on ' + device if device != 'cuda' else 'on cuda'}):")

    def line(what: str, value: float | None, target: float, fmt: str) -> None:
        if value is None:
            print(f"  {what}: not measured")
        else:
            print(f"  {what}: {fmt.format(value)} (target >= {fmt.format(target)}: {'met' if value >= target else 'missed'})")

    line("din rows/s at batch 8,192", din[8192]["rows_per_s"] if 8192 in din else None, TARGETS["din_8192"], "{:,.0f}")
    line("din rows/s at batch 1,024", din[1024]["rows_per_s"] if 1024 in din else None, TARGETS["din_1024"], "{:,.0f}")
    best = max(din.values(), key=lambda r: r["rows_per_s"]) if din else None
    line(f"busy share, din at batch {best['batch']:,}" if best else "busy share",
         best["busy"] if best and best["busy"] is not None else None, TARGETS["busy"], "{:.0%}")
    same = din.get(peer_batch)
    line(f"din / DeepCTR DIN, both at batch {peer_batch:,}", same["rows_per_s"] / peer["rows_per_s"] if peer and same else None,
         TARGETS["peer_ratio"], "{:.1f}x")
    if peer and best and best is not same:
        print(f"  (din at batch {best['batch']:,} / DeepCTR DIN at {peer_batch:,}: {best['rows_per_s'] / peer['rows_per_s']:.1f}x)")
    line("din evaluation rows/s", max(r["eval_rows_per_s"] for r in din.values()) if din else None, TARGETS["eval"], "{:,.0f}")


class BusySampler:
    """The device's busy share while the ``with`` block runs (None when it cannot be read)."""

    def __init__(self, device: str, threads: int) -> None:
        self.device, self.threads = device, threads
        self.samples: list[float] = []
        self.value: float | None = None

    @staticmethod
    def how(device: str) -> str:
        if device != "cuda":
            return "process CPU time / wall time / torch threads"
        import torch

        try:
            torch.cuda.utilization()
            return "GPU utilisation from NVML (torch.cuda.utilization), sampled every 50 ms"
        except Exception:  # noqa: BLE001 - pynvml missing or NVML unavailable: nvidia-smi instead
            return "GPU utilisation from nvidia-smi -lms 50"

    def __enter__(self) -> "BusySampler":
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        self.stop = threading.Event()
        self.thread = None
        if self.device == "cuda":
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def _sample(self) -> None:
        import torch

        try:
            while not self.stop.is_set():
                self.samples.append(torch.cuda.utilization() / 100)
                time.sleep(0.05)
        except Exception:  # noqa: BLE001
            smi = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                    "-i", "0", "-lms", "50"], stdout=subprocess.PIPE, text=True)
            try:
                for line in smi.stdout:
                    if self.stop.is_set():
                        break
                    if line.strip().isdigit():
                        self.samples.append(int(line) / 100)
            finally:
                smi.terminate()

    def __exit__(self, *exc) -> None:
        if self.device == "cuda":
            self.stop.set()
            self.thread.join(timeout=2)
            self.value = sum(self.samples) / len(self.samples) if self.samples else None
        else:
            self.value = (time.process_time() - self.cpu) / (time.perf_counter() - self.wall) / self.threads


def work_measure(job: dict) -> dict:
    """Every pooler x batch size: warm-up epoch, timed epochs (busy share sampled), evaluation, peak memory."""
    import torch

    from dinbench import poolers
    from dinbench.config import RunConfig
    from dinbench.prepared.contract import load
    from dinbench.runtime import LocalRuntime, predict, set_threads
    from dinbench.sources.local import load_or_prepare
    from dinbench.train import Trainer, TrainState

    set_threads(job["threads"])
    cuda = job["device"] == "cuda"
    data_dir = Path(job["data_dir"])
    prepared = load_or_prepare(data_dir, job["dataset"]) if job["dataset"] == "synthetic" else load(data_dir, job["dataset"])
    if job["train_rows"]:
        prepared.splits["train"] = prepared.splits["train"].iloc[: job["train_rows"]].reset_index(drop=True)
    specs = list(poolers.REGISTRY) if job["poolers"] == "all" else [s.strip() for s in job["poolers"].split(",") if s.strip()]

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    runs = []
    for spec in specs:
        for batch in job["batch_sizes"]:
            cfg = RunConfig(dataset=prepared.name, pooler=spec, epochs=10_000,  # the loop below decides
                            batch_size=batch, device=job["device"], **job["overrides"])
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            trainer = Trainer(cfg, prepared, LocalRuntime())
            state = TrainState()
            trainer.train_epoch(state)  # warm-up: allocator, kernels, compilation
            state.next_epoch()
            sync()
            with BusySampler(job["device"], job["threads"]) as busy:
                t0 = time.perf_counter()
                timed = 0
                while timed < job["epochs"] or time.perf_counter() - t0 < job.get("min_seconds", 0):
                    trainer.train_epoch(state)
                    state.next_epoch()
                    timed += 1  # (an epoch ends with a read of its loss: the clock sees finished work)
                sync()
                seconds = time.perf_counter() - t0
            rows = len(trainer.data.train) * timed
            model, store, samples = trainer.learner.model, trainer.data.store, trainer.data.train
            best = float("inf")
            for _ in range(3):
                sync()
                t0 = time.perf_counter()
                predict(model, store, samples, job["eval_batch"], trainer.device)
                sync()
                best = min(best, time.perf_counter() - t0)
            memory = torch.cuda.max_memory_allocated() / 2**20 if cuda else peak_rss_mb()
            runs.append(dict(pooler=cfg.pooler, batch=batch, rows_per_s=rows / seconds, busy=busy.value,
                             eval_rows_per_s=len(samples) / best, memory_mb=memory))
            print(f"{cfg.pooler} batch {batch}: {rows / seconds:,.0f} rows/s", file=sys.stderr, flush=True)
            del trainer, model
    return dict(runs=runs, train_rows=len(prepared.splits["train"]), busy_how=BusySampler.how(job["device"]))


if __name__ == "__main__":
    main()
