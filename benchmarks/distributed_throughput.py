"""Training throughput of one trial in 1 process against N data-parallel processes under torchrun.

Each variant runs the real trainer through the trial contract as a trial would (``kubenas-trainer``,
under ``torchrun --standalone --nproc-per-node N --no-python`` for N > 1), on the ResNet-like cell on
digits, and reads ``samples_per_second`` (training samples of all ranks per second of training steps,
validation excluded) and ``val_accuracy`` from its result file. A third variant gives the single
process as many torch threads as the N processes have together, so that more cores are not mistaken
for data parallelism. Rounds alternate the variants, so drift on a shared machine falls on all.
On CPU the processes talk through gloo; on GPUs (``--device cuda``) through NCCL, one GPU each.

    python benchmarks/distributed_throughput.py [--processes 2] [--repeats 3] [--epochs 3] [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from kubenas_trainer.candidate import RESNET_CELL

TRAINER = [sys.executable, "-m", "kubenas_trainer.main"]


def run_trial(processes: int, threads: int, settings: dict[str, Any]) -> dict[str, Any]:
    """One trial of the trainer with ``processes`` ranks of ``threads`` torch threads; its result object."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBENAS_")}
        env |= {
            "KUBENAS_ARCHITECTURE": json.dumps(RESNET_CELL),
            "KUBENAS_SETTINGS": json.dumps({**settings, "threads": threads}),
            "KUBENAS_SEED": "0",
            "KUBENAS_RESULT_FILE": str(result),
            "OMP_NUM_THREADS": str(threads),
        }
        command = TRAINER
        if processes > 1:
            launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1"]
            command = [*launcher, "--nproc-per-node", str(processes), "--no-python", *TRAINER]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"trainer failed ({processes} processes): {done.stderr[-2000:]}")
        return json.loads(result.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=2, help="data-parallel processes of the second variant")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; each runs every variant once")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per trial")
    parser.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (NCCL, one GPU per process)")
    parser.add_argument("--output", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args()
    n = args.processes
    settings = {
        "dataset": "digits",
        "width": 16,
        "stages": 3,
        "cells_per_stage": 1,
        "batch_size": 64,
        "epochs": args.epochs,
        "device": args.device,
        "latency_runs": 2,
    }
    variants = {"1_process_1_thread": (1, 1), f"{n}_processes_1_thread": (n, 1), f"1_process_{n}_threads": (1, n)}
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    names = list(variants)
    for r in range(args.repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            results[name].append(run_trial(*variants[name], settings))
    figures: dict[str, Any] = {
        "device": args.device,
        "epochs": args.epochs,
        "repeats": args.repeats,
        "cpus": os.cpu_count(),
    }
    for name, runs in results.items():
        figures[f"{name}_samples_per_s"] = statistics.median(r["samples_per_second"] for r in runs)
        figures[f"{name}_val_accuracy"] = statistics.median(r["val_accuracy"] for r in runs)
        figures[f"{name}_train_seconds"] = statistics.median(r["train_seconds"] for r in runs)
    single = figures["1_process_1_thread_samples_per_s"]
    figures[f"speedup_{n}_processes"] = figures[f"{n}_processes_1_thread_samples_per_s"] / single
    figures[f"speedup_{n}_threads"] = figures[f"1_process_{n}_threads_samples_per_s"] / single
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value:.4f}" if isinstance(value, float) else f"{key:<{width}}  {value}")
    print(json.dumps(figures))
    if args.output is not None:
        args.output.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
