"""The user's view of a cluster experiment: ``kubenas status``, ``kubenas logs``, ``kubenas watch``.

Read-only, with the user's own kubeconfig and RBAC: it gets the SearchExperiment, lists its Trials
(label ``kubenas.io/experiment``) and, for logs, the trial's pods. The history is read exactly as the
operator reads it (``TrialView``), so the leaderboard, importance and motifs shown here are the
figures local mode writes into its results folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from kubenas.api.v1alpha1 import GROUP, VERSION, SearchExperiment
from kubenas.core.errors import KubenasError
from kubenas.core.records import TrialRecord
from kubenas.core.space import build_space
from kubenas.insights import tables
from kubenas.insights.genotype import genotype
from kubenas.insights.importance import MIN_TRIALS, Importance, NotEnoughTrials, importance
from kubenas.insights.motifs import motifs
from kubenas.load import problems_of
from kubenas.operator import names
from kubenas.operator.views import TrialView, parse_time


class ClusterViewError(KubenasError):
    """What the view cannot show, in one line (no kubeconfig, no such experiment, access refused)."""


def has_credentials(kubeconfig: str | None = None) -> bool:
    """Whether a kubeconfig (given, $KUBECONFIG or ~/.kube/config) exists or this runs in a pod."""
    path = Path(os.path.expanduser(kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"))
    return path.exists() or bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def api_client(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """A ``kubernetes`` ApiClient from the user's kubeconfig, or ClusterViewError saying why not."""
    from kubernetes import client
    from kubernetes.config import ConfigException

    from kubenas.operator.kube import client_configuration

    if not has_credentials(kubeconfig):
        raise ClusterViewError(
            "no kubeconfig found (--kubeconfig, $KUBECONFIG or ~/.kube/config) and not running in a pod"
        )
    try:
        return client.ApiClient(client_configuration(kubeconfig, context))
    except (ConfigException, OSError, ValueError) as exc:
        raise ClusterViewError(f"cannot read the kubeconfig: {exc}") from None


def _refused(exc: Any, what: str) -> ClusterViewError:
    if getattr(exc, "status", None) == 404:
        return ClusterViewError(f"{what} not found")
    if getattr(exc, "status", None) == 403:
        return ClusterViewError(f"not allowed to read {what} (RBAC): {getattr(exc, 'reason', '')}")
    return ClusterViewError(f"reading {what} failed: {getattr(exc, 'status', '')} {getattr(exc, 'reason', exc)}")


@dataclass(frozen=True)
class Snapshot:
    """An experiment and its trials as read at ``taken``."""

    experiment: SearchExperiment
    status: dict[str, Any]
    trials: tuple[TrialRecord, ...]
    taken: datetime


def read_snapshot(api: Any, namespace: str, name: str) -> Snapshot:
    """The experiment and its trial history, read once."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    custom = client.CustomObjectsApi(api)
    try:
        body = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, names.PLURAL_EXPERIMENTS, name)
        items = custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, names.PLURAL_TRIALS, label_selector=f"{names.LABEL_EXPERIMENT}={name}"
        )["items"]
    except ApiException as exc:
        raise _refused(exc, f"SearchExperiment {namespace}/{name}") from None
    except HTTPError as exc:
        raise ClusterViewError(f"cannot reach the API server: {exc}") from None
    try:
        experiment = SearchExperiment.model_validate({k: v for k, v in body.items() if k != "status"})
    except ValidationError as exc:  # an object written by another Kubenas version
        field, message = problems_of(exc)[0]
        raise ClusterViewError(
            f"SearchExperiment {namespace}/{name} is not readable here: {field}: {message}"
        ) from None
    trials = sorted(
        (TrialView.parse(t).record() for t in items if (t.get("spec") or {}).get("experiment") == name),
        key=lambda r: r.index,
    )
    return Snapshot(experiment, dict(body.get("status") or {}), tuple(trials), datetime.now(UTC))


@dataclass
class ImportanceCache:
    """Importance recomputed only when the number of finished trials changed (``watch`` refreshes often)."""

    done: int = -1
    value: Importance | str | None = None

    def get(self, snap: Snapshot) -> Importance | str:
        done = sum(r.done for r in snap.trials)
        if done != self.done or self.value is None:
            self.done = done
            try:
                self.value = importance(build_space(snap.experiment.spec.search_space), snap.trials)
            except NotEnoughTrials as exc:
                self.value = f"importance: {exc}"
        return self.value


def _elapsed(status: dict[str, Any], now: datetime) -> float | None:
    start = parse_time(status.get("startTime"))
    end = parse_time(status.get("completionTime")) or now
    return None if start is None else max(0.0, (end - start).total_seconds())


def _duration(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m{s:02d}s" if hours else f"{m}m{s:02d}s"


def _reason(status: dict[str, Any]) -> str:
    """The reason of the Running condition: Running while it runs, why it stopped once it has."""
    for c in status.get("conditions") or []:
        if c.get("type") == "Running":
            return str(c.get("reason") or "")
    return ""


def one_shot_line(shot: dict[str, Any], metric: str) -> str:
    """A one-shot search's phases in one line: the phase, the supernet, the candidates scored on it."""
    supernet = shot.get("supernet") or {}
    trained = "trained" if supernet.get("succeeded") else "failed" if supernet.get("failed") else "training"
    told = shot.get("evaluations") or {}
    line = f"one-shot phase {shot.get('phase')}: supernet {trained}"
    line += f", {told.get('told', 0)}/{told.get('target', 0)} candidates scored on it ({told.get('failed', 0)} failed)"
    if shot.get("bestScore") is not None:
        line += f", best one-shot {metric} {_num(shot['bestScore'])}"
    if shot.get("parameterFree") is not None:
        line += f", top {len(shot.get('top') or [])} parameter-free edges {shot['parameterFree']:.0%}"
    return line


def status_view(snap: Snapshot, top: int = 10, cache: ImportanceCache | None = None) -> RenderableType:
    """Everything ``kubenas status`` prints: phase, progress, budget, leaderboard, best genotype, insights."""
    exp, st = snap.experiment, snap.status
    spec, objective = exp.spec, exp.spec.objective
    done = sum(r.done for r in snap.trials)
    counts = {p: sum(r.phase == p for r in snap.trials) for p in ("Pending", "Running", "Succeeded", "Failed")}
    counts["Infeasible"] = sum(r.phase == "Infeasible" for r in snap.trials)
    counts["Pruned"] = sum(r.phase == "Pruned" for r in snap.trials)
    head = Text()
    head.append(f"{exp.metadata.name}", style="bold")
    head.append(f"  {st.get('phase', 'Pending')}", style="cyan")
    reason = _reason(st)
    if reason and reason != st.get("phase"):
        head.append(f" ({reason})")
    aims = ", ".join(f"{o.direction} {o.name}" for o in objective.objectives())
    head.append(f"  strategy {spec.strategy.name}, {aims}")
    if st.get("message"):
        head.append(f"\n{st['message']}", style="dim")
    bar = Table.grid(padding=(0, 1))
    bar.add_row(
        ProgressBar(total=spec.budget.max_trials, completed=min(done, spec.budget.max_trials), width=40),
        f"{done}/{spec.budget.max_trials} trials",
    )
    budget = [
        f"running {counts['Running']}/{spec.budget.parallel_trials} parallel, pending {counts['Pending']}",
        f"succeeded {counts['Succeeded']}, failed {counts['Failed']}"
        + (f"/{spec.budget.max_failed_trials} allowed" if spec.budget.max_failed_trials is not None else "")
        + f", infeasible {counts['Infeasible']}, pruned {counts['Pruned']}",
    ]
    elapsed = _elapsed(st, snap.taken)
    if elapsed is not None:
        limit = spec.budget.max_duration_seconds()
        budget.append(f"elapsed {_duration(elapsed)}" + (f" of {_duration(limit)}" if limit else ""))
    gpu = st.get("gpuHours")
    if gpu:
        budget.append(f"GPU-hours {gpu['used']:.3g}" + (f" of {gpu['limit']:g}" if gpu.get("limit") else ""))
    parts: list[RenderableType] = [head, bar, Text("; ".join(budget))]
    if st.get("oneShot"):
        parts.append(Text(one_shot_line(st["oneShot"], objective.metric)))
    board = tables.leaderboard(objective, list(snap.trials), top)
    parts.append(board if board is not None else Text("no trial has succeeded yet"))
    if st.get("paretoFront"):
        parts.append(tables.front_table(objective, st["paretoFront"], st.get("paretoSize")))
    best = (st.get("bestTrial") or {}).get("architecture")
    if best:
        parts.append(Text(f"best architecture ({st['bestTrial'].get('name')}): {genotype(best)}", style="green"))
    succeeded = counts["Succeeded"]
    if succeeded >= MIN_TRIALS:
        imp = (cache or ImportanceCache()).get(snap)
        parts.append(tables.importance_table(imp, objective) if isinstance(imp, Importance) else Text(imp))
    else:
        parts.append(Text(f"importance: after {MIN_TRIALS} succeeded trials ({succeeded} so far)", style="dim"))
    found = motifs(snap.trials, min(5, top))
    if found is not None and succeeded >= MIN_TRIALS:
        parts.append(tables.motifs_table(found))
    return Group(*parts)


# -- logs ----------------------------------------------------------------------------------------
@dataclass
class TrialLogs:
    """What the cluster keeps of one trial: its status, its pods' logs and termination messages."""

    trial: str
    phase: str
    metrics: dict[str, float]
    reason: str | None
    message: str | None
    logs: list[tuple[str, str | None, str]] = field(default_factory=list)  # (pod, log or None, why none)
    terminations: list[tuple[str, str]] = field(default_factory=list)  # (pod, termination message)


def epochs(log: str) -> list[dict[str, Any]]:
    """The per-epoch progress lines of a trainer's stdout (trial contract: ``{"event": "epoch", ...}``)."""
    out = []
    for line in log.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and obj.get("event") == "epoch":
            out.append(obj)
    return out


def read_logs(api: Any, namespace: str, trial: str, tail: int | None = None) -> TrialLogs:
    """The trial's status and, for each of its pods (one per attempt), the trainer's log and termination message."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    try:
        body = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, names.PLURAL_TRIALS, trial)
        pods = core.list_namespaced_pod(namespace, label_selector=f"{names.LABEL_TRIAL}={trial}").items
    except ApiException as exc:
        raise _refused(exc, f"Trial {namespace}/{trial}") from None
    rec = TrialView.parse(body).record()
    message = (body.get("status") or {}).get("message")
    out = TrialLogs(trial, rec.phase, dict(rec.metrics), rec.reason, message)
    for pod in sorted(pods, key=lambda p: p.metadata.creation_timestamp or datetime.min.replace(tzinfo=UTC)):
        pod_name = pod.metadata.name
        try:
            text = core.read_namespaced_pod_log(pod_name, namespace, container=names.TRAINER_CONTAINER, tail_lines=tail)
            out.logs.append((pod_name, text, ""))
        except ApiException as exc:
            out.logs.append((pod_name, None, f"{exc.status} {exc.reason}".strip()))
        for cs in (pod.status.container_statuses or []) if pod.status else []:
            for state in (cs.state, cs.last_state):
                term = state.terminated if state else None
                if term is not None and term.message:
                    out.terminations.append((pod_name, term.message))
    return out


def logs_view(logs: TrialLogs) -> RenderableType:
    """The trial's outcome, per-epoch metrics from its log, the log itself, and termination messages."""
    parts: list[RenderableType] = []
    head = Text(f"{logs.trial}  {logs.phase}", style="bold")
    if logs.reason:
        head.append(f" ({logs.reason})")
    if logs.message:
        head.append(f"\n{logs.message}", style="dim")
    parts.append(head)
    if logs.metrics:
        parts.append(Text("final metrics: " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(logs.metrics.items()))))
    if not logs.logs:
        parts.append(Text("no pod is left for this trial (its Job was cleaned up); the status above is what remains"))
    for pod, text, why in logs.logs:
        if text is None:
            parts.append(Text(f"--- {pod}: no log from the node ({why})", style="yellow"))
            continue
        parts.append(Text(f"--- {pod}", style="bold"))
        rows = epochs(text)
        if rows:
            keys = sorted({k for r in rows for k in (r.get("metrics") or {})})
            table = Table(title=f"per-epoch metrics ({pod})")
            table.add_column("epoch", justify="right")
            for k in keys:
                table.add_column(k, justify="right")
            for r in rows:
                m = r.get("metrics") or {}
                table.add_row(str(r.get("epoch", "")), *(_num(m.get(k)) for k in keys))
            parts.append(table)
        parts.append(Text(text.rstrip()))
    for pod, message in logs.terminations:
        parts.append(Text(f"--- {pod}: termination message", style="bold"))
        parts.append(Text(message.rstrip()))
    return Group(*parts)


def _num(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else ("" if value is None else str(value))


def watch(
    read: Callable[[], Snapshot],
    show: Callable[[RenderableType], None],
    interval: float,
    sleep: Callable[[float], None],
    top: int = 10,
    rounds: int | None = None,
) -> Snapshot:
    """Re-read and re-show the experiment every ``interval`` seconds until it ends (or ``rounds`` reads)."""
    cache = ImportanceCache()
    n = 0
    while True:
        snap = read()
        show(status_view(snap, top, cache))
        n += 1
        if snap.status.get("phase") in ("Succeeded", "Failed") or (rounds is not None and n >= rounds):
            return snap
        sleep(interval)
