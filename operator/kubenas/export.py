"""``kubenas export``: the best trial's weights and architecture, out of a results folder or a cluster.

A trial leaves ``model.pt`` (a plain state dict), ``architecture.json`` (decisions, genotype, the
resolved settings and input shape that rebuild the network) and ``metrics.jsonl`` in its output
folder: ``trials/<trial>/output`` of a local results folder, or ``<path>/<experiment>/<trial>`` of
the experiment's artifact store (``spec.artifacts``) on Kubernetes. Export finds the best trial's
folder (``summary.json`` locally, ``status.bestTrial.artifacts`` of the SearchExperiment on a
cluster), copies those files and writes ``load_model.py``, a few lines of PyTorch that load them. A
trial with a searched augmentation policy also left ``augment_policy.json`` and ``augment_policy.py``
(the policy, and a few lines that apply it with torchvision): they are copied too.

On a cluster the artifact store is a PersistentVolumeClaim; export reads it where this machine can:
a PersistentVolume backed by a ``hostPath`` or ``local`` directory (the test cluster's, a
single-node cluster's). Any other volume is read through a pod that mounts the claim (``kubectl
cp``): the error says which folder to copy, and ``kubenas export FOLDER --to DIR`` finishes the job.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from kubenas.api.augment import POLICY_FILE, SNIPPET_FILE
from kubenas.core.errors import SpecError

WEIGHTS_FILE = "model.pt"
ARCHITECTURE_FILE = "architecture.json"
METRICS_FILE = "metrics.jsonl"
LOADER_FILE = "load_model.py"
PICTURE_FILE = "architecture.png"
#: where the local runner keeps a trial's outputs, relative to the results folder
LOCAL_OUTPUT = "trials/{trial}/output"

LOADER = '''\
"""Load the best trial of {experiment} ({trial}): {genotype}"""

from pathlib import Path

import torch

from kubenas_trainer.outputs import load_model  # pip install 'kubenas[torch]'

here = Path(__file__).parent
state = torch.load(here / "{weights}", map_location="cpu", weights_only=True)  # the plain state dict
model = load_model(here)  # the network rebuilt from {architecture}, those weights loaded, in eval mode
print(model(torch.zeros(1, *{shape})).shape)
'''


class ExportError(SpecError):
    """What export cannot do, naming what to look at (the field is the experiment's or folder's)."""


@dataclass(frozen=True)
class BestTrial:
    """The trial to export and the folder that holds its artifacts on this machine."""

    experiment: str
    trial: str
    folder: Path


def from_results(results: Path) -> BestTrial:
    """The best trial of a local run, from its results folder's ``summary.json``."""
    summary_file = results / "summary.json"
    if not summary_file.is_file():
        raise ExportError(str(results), "no summary.json: not a results folder of `kubenas run`")
    summary = json.loads(summary_file.read_text())
    best = summary.get("best")
    if not best:
        raise ExportError(str(summary_file), "no best trial yet (no trial succeeded)")
    where = best.get("artifacts") or LOCAL_OUTPUT.format(trial=best["trial"])
    return BestTrial(summary.get("experiment", results.name), best["trial"], results / where)


def claim_directory(core: Any, namespace: str, claim: str) -> Path:
    """The local directory behind a bound PersistentVolumeClaim (a hostPath or local PersistentVolume).

    ``core`` is a ``kubernetes.client.CoreV1Api``. Other volume kinds are not on this machine's disk.
    """
    pvc = core.read_namespaced_persistent_volume_claim(claim, namespace)
    volume = pvc.spec.volume_name
    if not volume or (pvc.status and pvc.status.phase != "Bound"):
        raise ExportError(f"persistentvolumeclaim/{claim}", "is not bound to a PersistentVolume")
    pv = core.read_persistent_volume(volume).spec
    source = pv.host_path or pv.local
    if source is None:
        raise ExportError(
            f"persistentvolume/{volume}",
            "is not a hostPath or local directory of this machine: copy the trial's folder through a pod that"
            " mounts the claim (kubectl cp), then run kubenas export on that folder",
        )
    return Path(source.path)


def from_cluster(custom: Any, core: Any, namespace: str, name: str) -> BestTrial:
    """The best trial of a SearchExperiment, from its status, and its folder in the artifact store.

    ``custom`` and ``core`` are ``CustomObjectsApi`` and ``CoreV1Api`` of the user's kubeconfig. The
    location is the one recorded in status (the experiment's best trial, else that Trial's), else
    the one the spec gives it: ``<path>/<experiment>/<trial>`` of ``spec.artifacts``, where the
    trainer pod wrote.
    """
    from kubenas.api.template import Artifacts
    from kubenas.api.v1alpha1 import GROUP, VERSION

    obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "searchexperiments", name)
    best = (obj.get("status") or {}).get("bestTrial")
    if not best:
        raise ExportError("status.bestTrial", f"searchexperiment {namespace}/{name} has no best trial yet")
    artifacts = best.get("artifacts")
    if not artifacts:
        trial = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "trials", best["name"])
        artifacts = (trial.get("status") or {}).get("artifacts")
    if not artifacts and obj["spec"].get("artifacts"):
        store = Artifacts.model_validate(obj["spec"]["artifacts"])
        artifacts = {
            "persistentVolumeClaim": store.persistent_volume_claim,
            "path": store.trial_path(name, best["name"]),
        }
    if not artifacts:
        raise ExportError(
            "spec.artifacts", f"searchexperiment {namespace}/{name} keeps no artifacts (set spec.artifacts)"
        )
    root = claim_directory(core, namespace, artifacts["persistentVolumeClaim"])
    return BestTrial(name, best["name"], root / artifacts["path"])


def export(best: BestTrial, to: Path) -> list[Path]:
    """Copy the best trial's weights, architecture, curve and augmentation policy into ``to``, write the loader.

    Returns the files written.
    """
    missing = [f for f in (WEIGHTS_FILE, ARCHITECTURE_FILE) if not (best.folder / f).is_file()]
    if missing:
        raise ExportError(str(best.folder), f"{' and '.join(missing)} missing: did the trial keep its outputs?")
    to.mkdir(parents=True, exist_ok=True)
    written = []
    for name in (WEIGHTS_FILE, ARCHITECTURE_FILE, METRICS_FILE, POLICY_FILE, SNIPPET_FILE):
        if (best.folder / name).is_file():
            written.append(Path(shutil.copyfile(best.folder / name, to / name)))
    described = json.loads((best.folder / ARCHITECTURE_FILE).read_text())
    loader = to / LOADER_FILE
    loader.write_text(
        LOADER.format(
            experiment=best.experiment,
            trial=best.trial,
            genotype=described.get("genotype", described.get("architectureId", "")),
            weights=WEIGHTS_FILE,
            architecture=ARCHITECTURE_FILE,
            shape=tuple(described.get("input", {}).get("shape", ())),
        )
    )
    written.append(loader)
    decisions = described.get("architecture")
    if isinstance(decisions, dict):  # the architecture drawn, where matplotlib is installed
        from kubenas.insights.pictures import save_architecture

        title = f"{best.trial}: {described.get('genotype') or ''}".rstrip(": ")
        picture = save_architecture(to / PICTURE_FILE, decisions, title)
        if picture is not None:
            written.append(picture)
    return written


def export_command(
    source: Annotated[str, typer.Argument(help="A results folder of `kubenas run`, or a SearchExperiment's name.")],
    to: Annotated[Path, typer.Option("--to", help="Folder to write model.pt, architecture.json and the loader into.")],
    namespace: Annotated[str | None, typer.Option("--namespace", "-n", help="Namespace of the experiment.")] = None,
    kubeconfig: Annotated[Path | None, typer.Option(help="Kubeconfig (default: $KUBECONFIG, ~/.kube/config).")] = None,
    context: Annotated[str | None, typer.Option(help="Kubeconfig context.")] = None,
) -> None:
    """Write the best trial's weights, architecture and a few lines of PyTorch that load them."""
    try:
        if Path(source).is_dir():
            best = from_results(Path(source))
        else:
            from kubernetes import client

            from kubenas.insights.cli import _client, _namespace

            api = _client(kubeconfig, context)
            best = from_cluster(
                client.CustomObjectsApi(api), client.CoreV1Api(api), _namespace(namespace, kubeconfig, context), source
            )
        written = export(best, to)
    except ExportError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{best.trial} of {best.experiment}: " + ", ".join(str(p) for p in written))


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)
