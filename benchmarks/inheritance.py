"""Weight inheritance on the digits cell search: evolution with ``inheritWeights`` against without.

Both runs are the same experiment (examples/digits-cell-search.yaml's space and trial settings, the
same strategy seed, so the same random first population with the same trial seeds) and differ only in
``trialTemplate.inheritWeights``. Every trial validates after each epoch and keeps its curve in
``metrics.jsonl``; the children (trials bred from a parent) are what inheritance changes. Figures:

* per child: the epochs it needed to reach a target validation accuracy (the lower of the two runs'
  best, so both runs reached it at least once), the share of children that reached it at all, and
  the mean training seconds per child;
* per search: the child epochs (and training seconds) spent until a child reached the target,
  counting each child's epochs in ask order (the random first population, the same in both runs,
  is left out);
* the best validation accuracy of each run.

Each ratio is inheritance / scratch (below 1: inheritance needs less). A run is a few minutes of CPU.

    nice -n 10 python benchmarks/inheritance.py --seeds 1 2 --trials 16 --epochs 6 --out inheritance.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from kubenas.local.journal import read_journal
from kubenas.local.runner import prepare, run

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "digits-cell-search.yaml"


def experiment(seed: int, trials: int, epochs: int, population: int, inherit: bool) -> dict[str, Any]:
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["metadata"]["name"] = f"{'inherit' if inherit else 'scratch'}-{seed}"
    spec = doc["spec"]
    spec["strategy"] = {
        "name": "evolution",
        "seed": seed,
        "evolution": {"populationSize": population, "sampleSize": max(2, population // 2)},
    }
    spec["budget"] = {"maxTrials": trials, "parallelTrials": 2}
    template = spec["trialTemplate"]
    template["command"] = [sys.executable, "-m", "kubenas_trainer.main"]
    template["settings"] = {**template["settings"], "epochs": epochs, "timeBudgetS": 600}
    template["inheritWeights"] = inherit
    return doc


def curves(folder: Path) -> list[dict[str, Any]]:
    """Each trial in ask order: its parents and its per-epoch validation accuracy and seconds."""
    trials, _ = read_journal(folder)
    out = []
    for t in trials:
        path = folder / "trials" / t.name / "output" / "metrics.jsonl"
        lines = path.read_text().splitlines() if path.is_file() else []  # a bad candidate trains nothing
        epochs = [json.loads(line) for line in lines]
        out.append(
            {
                "trial": t.name,
                "parents": list(t.parents),
                "phase": t.phase,
                "val": [e.get("val_accuracy", 0.0) for e in epochs],
                "seconds": [e.get("seconds", 0.0) for e in epochs],
                "inherited_fraction": t.metrics.get("inherited_fraction"),
            }
        )
    return out


def figures(trials: list[dict[str, Any]], population: int, target: float) -> dict[str, Any]:
    children = trials[population:]
    reached = [next((i + 1 for i, v in enumerate(c["val"]) if v >= target), None) for c in children]
    hits = [r for r in reached if r is not None]
    finals = [c["val"][-1] for c in children if c["val"]]
    spent_epochs = spent_seconds = 0.0
    search_epochs = search_seconds = None
    for c in children:
        for i, v in enumerate(c["val"]):
            spent_epochs += 1
            spent_seconds += c["seconds"][i]
            if v >= target:
                search_epochs, search_seconds = spent_epochs, spent_seconds
                break
        if search_epochs is not None:
            break
    return {
        "children": len(children),
        "with_parent": sum(bool(c["parents"]) for c in children),
        "reached_target": len(hits),
        "mean_epochs_to_target": statistics.fmean(hits) if hits else None,
        "mean_child_seconds": statistics.fmean(sum(c["seconds"]) for c in children) if children else None,
        "mean_child_final_val": statistics.fmean(finals) if finals else None,
        "search_child_epochs_to_target": search_epochs,
        "search_child_seconds_to_target": search_seconds,
        "best_val": max(max(t["val"], default=0.0) for t in trials),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 or math.isnan(b) else a / b


RATIOS = (
    "mean_epochs_to_target",
    "mean_child_seconds",
    "search_child_epochs_to_target",
    "search_child_seconds_to_target",
)


def compare(runs: dict[str, list[dict[str, Any]]], population: int, target: float | None) -> dict[str, Any]:
    """Both runs of one seed: figures at the same target, and inheritance / scratch ratios."""
    best = {k: max(max(t["val"], default=0.0) for t in v) for k, v in runs.items()}
    target = target if target is not None else min(best.values())
    got: dict[str, Any] = {k: figures(v, population, target) for k, v in runs.items()}
    got["target"] = target
    got["ratios"] = {key: ratio(got["inherit"][key], got["scratch"][key]) for key in RATIOS}
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--population", type=int, default=6)
    parser.add_argument("--target", type=float, default=None, help="default: the lower of the two runs' best")
    parser.add_argument("--results", type=Path, default=None, help="keep the results folders here")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--reuse", type=Path, default=None, help="recompute the figures of a report's trials")
    args = parser.parse_args()
    if args.reuse is not None:
        report = json.loads(args.reuse.read_text())
        report["seeds"] = {
            seed: {**compare(got["trials"], args.population, args.target), "trials": got["trials"]}
            for seed, got in report["seeds"].items()
        }
    else:
        report = {"command": " ".join(sys.argv), "seeds": {}}
        root = args.results or Path(tempfile.mkdtemp(prefix="inheritance-"))
        with open(os.devnull, "w") as devnull:
            for seed in args.seeds:
                runs = {}
                for inherit in (False, True):
                    doc = experiment(seed, args.trials, args.epochs, args.population, inherit)
                    path = root / f"{doc['metadata']['name']}.yaml"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(yaml.safe_dump(doc))
                    exp, folder = prepare(path, root / doc["metadata"]["name"], None)
                    run(exp, folder, Console(file=devnull))
                    runs["inherit" if inherit else "scratch"] = curves(folder)
                report["seeds"][str(seed)] = {**compare(runs, args.population, args.target), "trials": runs}
    for seed, got in report["seeds"].items():
        print(seed, json.dumps({k: v for k, v in got.items() if k != "trials"}, indent=2), flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
