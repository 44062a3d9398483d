"""The API server refuses every manifest of the admission corpus at the expected field, and agrees
with `kubenas validate` on random mutations of the examples.

Each manifest goes through a server-side dry run (``dryRun=All``, strict field validation, what
``kubectl apply --dry-run=server`` sends), so nothing is stored and one namespace serves them all.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes.client.exceptions import ApiException

from kubenas.api.settings import MAX_SETTINGS_DEPTH, MAX_SETTINGS_WEIGHT
from kubenas.api.v1alpha1 import GROUP, VERSION
from kubenas.load import ManifestError, parse_document
from kubenas_dev.operator_fixtures import crds
from kubenas_dev.operator_testing import experiment_manifest
from tests.admission.corpus import CORPUS, Case, cases, examples, mutated
from tests.e2e.conftest import KubeApis

__all__ = ["crds"]

CASES = cases()


def dry_run(k8s: KubeApis, namespace: str, doc: Any, plural: str) -> tuple[bool, str]:
    """The API server's verdict on creating ``doc``: (accepted, its message when refused)."""
    try:
        k8s.custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, doc, dry_run="All", field_validation="Strict"
        )
    except ApiException as exc:
        if exc.status not in (400, 422):
            raise
        try:
            return False, json.loads(exc.body or "{}").get("message", "")
        except ValueError:
            return False, str(exc.body)
    return True, ""


def plural_of(doc: Any, fallback: str = "searchexperiments") -> str:
    kind = doc.get("kind") if isinstance(doc, dict) else None
    return {"SearchExperiment": "searchexperiments", "Trial": "trials"}.get(kind, fallback)  # type: ignore[arg-type]


def test_the_api_server_refuses_every_corpus_manifest_at_its_field(k8s: KubeApis, namespace: str, crds: None) -> None:
    """One test for the whole corpus (one dry run each): a failure lists every manifest that slipped."""
    wrong: list[str] = []
    for case in CASES:
        doc = case.document()
        accepted, message = dry_run(k8s, namespace, doc, plural_of(doc, _fallback(case)))
        if accepted:
            wrong.append(f"{case.id}: accepted ({case.rule})")
        elif not mentions(message, case.expected):
            wrong.append(f"{case.id}: expected {case.expected} in: {message}")
    assert not wrong, f"{len(wrong)} of {len(CASES)} corpus manifests:\n" + "\n".join(wrong)


def mentions(message: str, path: str) -> bool:
    """Whether the server's message names the path (apiVersion and kind are named in words there)."""
    return path in message or path.lower() in message.lower().replace(" ", "")


def _fallback(case: Case) -> str:
    return "trials" if case.id.startswith("trial-") else "searchexperiments"


def local_verdict(doc: Any) -> bool:
    try:
        parse_document(doc, kubernetes=True)
    except ManifestError:
        return False
    return True


@settings(
    max_examples=300,
    derandomize=True,  # the same mutations every run: CI is repeatable (set False locally to explore)
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(doc=mutated(examples()))
def test_validate_and_the_api_server_agree_on_random_mutations(
    k8s: KubeApis, namespace: str, crds: None, doc: dict[str, Any]
) -> None:
    accepted, message = dry_run(k8s, namespace, doc, plural_of(doc))
    assert local_verdict(doc) == accepted, f"kubenas validate and the API server ({message!r}) disagree on {doc}"


#: settings around the weight and depth limits: long strings, long lists, deep nests, awkward characters
_TEXT = st.text(st.sampled_from(["a", "é", "\U0001f600", "\x01", '"']), max_size=12)
_LEAF = st.one_of(
    st.integers(-5, 5), st.none(), st.booleans(), _TEXT, st.builds(lambda n: "x" * n, st.integers(0, 6000))
)
_VALUE = st.recursive(
    _LEAF,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(_TEXT, inner, max_size=4),
        st.builds(lambda n: [0] * n, st.integers(0, 1200)),
    ),
    max_leaves=12,
)


def _deep(value: Any, depth: int) -> Any:
    for _ in range(depth):
        value = [value]
    return value


_SETTINGS = st.one_of(
    st.dictionaries(_TEXT, _VALUE, max_size=5),
    st.builds(lambda v, d: {"deep": _deep(v, d)}, _VALUE, st.integers(MAX_SETTINGS_DEPTH - 3, MAX_SETTINGS_DEPTH + 1)),
)


@settings(
    max_examples=120,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(trial=_SETTINGS, supernet=_SETTINGS)
def test_the_admission_policy_and_validate_weigh_settings_alike(
    k8s: KubeApis, namespace: str, crds: None, trial: dict[str, Any], supernet: dict[str, Any]
) -> None:
    """Random settings near the limits: the same verdict, and the server names the path with the model's words."""
    doc = experiment_manifest("weighed", settings=trial)
    doc["spec"]["oneShot"] = {"supernetSettings": supernet}
    doc["spec"]["artifacts"] = {"persistentVolumeClaim": "store"}
    accepted, message = dry_run(k8s, namespace, doc, "searchexperiments")
    try:
        parse_document(doc, kubernetes=True)
    except ManifestError as err:
        assert not accepted, f"the API server accepted what kubenas validate refused: {err.problems}"
        assert any(f"{path}: {words}" in message for path, words in err.problems), (message, err.problems)
        return
    assert accepted, f"kubenas validate accepted what the API server refused ({MAX_SETTINGS_WEIGHT}): {message}"


def test_gpu_hours_count_the_gpus_of_the_templates_trainer(k8s: KubeApis, namespace: str, crds: None) -> None:
    """maxGpuHours with the GPUs on the pod template's trainer container (not the short form): both the
    API server and kubenas validate accept it, and both refuse it with neither."""
    doc = yaml.safe_load((CORPUS / "experiment-template-bad-quantity.yaml").read_text())
    container = doc["spec"]["trialTemplate"]["template"]["spec"]["containers"][0]
    container["resources"] = {"limits": {"nvidia.com/gpu": 2}}
    doc["spec"]["budget"]["maxGpuHours"] = 4
    assert dry_run(k8s, namespace, doc, "searchexperiments")[0] and local_verdict(doc)
    del container["resources"]
    accepted, message = dry_run(k8s, namespace, doc, "searchexperiments")
    assert not accepted and "spec.budget.maxGpuHours" in message and not local_verdict(doc)
