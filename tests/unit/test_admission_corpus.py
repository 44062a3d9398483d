"""`kubenas validate` refuses every manifest of the admission corpus, naming the expected field.

The same corpus goes through a server-side dry run in tests/e2e/test_admission_corpus.py, so the
local validator and the API server are held to the same verdicts and paths.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from kubenas.api import kube
from kubenas.api.v1alpha1 import MAX_EXPERIMENT_NAME, experiment_name_ok
from kubenas.load import MAX_DEPTH, ManifestError, parse_document, validate_file
from kubenas.operator import names
from tests.admission.corpus import EXAMPLES, Case, cases, examples, mutated, names_path
from tests.conftest import experiment_dict

CASES = cases()


def test_the_corpus_covers_both_kinds_and_enough_rules() -> None:
    kinds = {c.path.name.split("-", 1)[0] for c in CASES}
    assert len(CASES) >= 120 and kinds == {"experiment", "trial"}
    assert len({c.rule for c in CASES}) >= 80


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_validate_refuses_the_corpus_manifest_at_its_field(case: Case) -> None:
    (verdict,) = validate_file(case.path)
    assert verdict.error is not None, f"{case.id} ({case.rule}) was accepted"
    paths = [p for p, _ in verdict.error.problems]
    assert names_path(paths, case.expected), f"{case.id}: expected {case.expected}, got {verdict.error.problems}"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_passes_the_kubernetes_checks(path: Path) -> None:
    assert [v.error for v in validate_file(path)] == [None]


def test_no_coercion_of_strings_booleans_or_integers() -> None:
    for budget in ({"maxTrials": "10"}, {"maxTrials": True}, {"maxTrials": 10, "parallelTrials": 1.5}):
        with pytest.raises(ManifestError) as err:
            parse_document(experiment_dict(budget=budget), kubernetes=False)
        assert err.value.problems[0][0].startswith("spec.budget."), err.value


def test_nan_and_infinities_are_refused_with_their_path() -> None:
    for bad in (math.nan, math.inf, -math.inf):
        doc = experiment_dict(objective={"metric": "acc", "target": bad})
        with pytest.raises(ManifestError) as err:
            parse_document(doc, kubernetes=False)
        assert ("spec.objective.target", "NaN and infinities are not numbers JSON can carry") in err.value.problems


def test_a_misspelt_field_gets_a_suggestion() -> None:
    doc = experiment_dict(budget={"maxTrails": 5, "maxTrials": 5})
    doc["metadata"]["lables"] = {"a": "b"}
    with pytest.raises(ManifestError) as err:
        parse_document(doc, kubernetes=False)
    problems = dict(err.value.problems)
    assert "did you mean 'maxTrials'" in problems["spec.budget.maxTrails"]
    assert "did you mean 'labels'" in problems["metadata.lables"]


def test_deep_yaml_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("spec: " + "[" * 5000 + "]" * 5000 + "\n")
    (verdict,) = validate_file(deep)
    assert verdict.error is not None and f"nesting deeper than {MAX_DEPTH}" in str(verdict.error)


def test_every_document_of_a_file_is_validated_trials_included(tmp_path: Path) -> None:
    trial = {
        "apiVersion": "kubenas.io/v1alpha1",
        "kind": "Trial",
        "metadata": {"name": "t-00000"},
        "spec": {"experiment": "t", "index": 0, "architecture": {}, "architectureId": ""},
    }
    bad_trial = {**trial, "spec": {**trial["spec"], "index": -1}}
    path = tmp_path / "both.yaml"
    path.write_text(yaml.safe_dump_all([experiment_dict(), trial, bad_trial, {"kind": "Pod"}]))
    verdicts = validate_file(path, kubernetes=False)
    assert [v.error is None for v in verdicts] == [True, True, False, False]
    assert verdicts[2].error is not None and verdicts[2].error.problems[0][0] == "spec.index"
    assert verdicts[3].error is not None and {p for p, _ in verdicts[3].error.problems} == {"apiVersion", "kind"}


def test_local_mode_needs_no_image_but_kubernetes_does() -> None:
    doc = experiment_dict()
    parse_document(doc, kubernetes=False)
    with pytest.raises(ManifestError) as err:
        parse_document(doc, kubernetes=True)
    assert err.value.problems[0][0] == "spec.trialTemplate.image"


def test_validate_prints_bracketed_messages_verbatim(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from kubenas.cli import app

    doc = experiment_dict(searchSpace={"hyperparameters": [{"name": "Bad", "type": "int", "low": 1, "high": 3}]})
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = CliRunner().invoke(app, ["validate", "--local", str(path)])
    assert result.exit_code == 1
    assert "'^[a-z][a-z0-9_]{0,62}$'" in result.output


def children_valid(name: str) -> bool:
    """Whether every name the operator derives from ``name`` (names.py) is valid for its kind."""
    service = names.controller_name(name)  # also the Deployment and the Secret
    last_trial = names.trial_name(name, 99999)  # a Trial, its Job, the job-name label of its pods
    labels = {**names.trainer_labels(name, last_trial), **names.controller_selector(name)}
    return (
        len(service) <= kube.LABEL_MAX
        and kube.matches(kube.DNS1035_LABEL, service)
        and len(last_trial) <= kube.LABEL_MAX
        and kube.matches(kube.DNS1123_LABEL, last_trial)
        and all(len(v) <= kube.LABEL_MAX and kube.matches(kube.LABEL_VALUE, v) for v in labels.values())
    )


@pytest.mark.parametrize("name", ["a", "search", "a" * MAX_EXPERIMENT_NAME, "x-1", "z9", "a--b"])
def test_an_admitted_name_gives_children_valid_names(name: str) -> None:
    assert experiment_name_ok(name) and children_valid(name)


@pytest.mark.parametrize("name", ["a" * (MAX_EXPERIMENT_NAME + 1), "a.b", "1a", "a-", "A"])
def test_a_refused_name_would_break_a_child(name: str) -> None:
    assert not experiment_name_ok(name) and not children_valid(name)


@settings(max_examples=300, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(examples()))
def test_validate_gives_a_verdict_on_any_mutation_never_a_crash(doc: dict) -> None:
    try:
        parse_document(doc)
    except ManifestError as err:
        assert err.problems and all(isinstance(p, str) and p for p, _ in err.problems)


def test_the_known_operations_are_the_trainers() -> None:
    """An operation admitted is one the trainer builds; one the trainer builds is admitted."""
    ops = pytest.importorskip("kubenas_trainer.ops")
    from kubenas.api.space import KNOWN_OPERATIONS

    assert set(KNOWN_OPERATIONS) == set(ops.OPERATIONS) | set(ops.ALIASES)


def test_a_null_field_is_what_the_api_server_makes_of_it() -> None:
    """The API server prunes nulls before defaulting: a default applies, a required field is missing."""
    exp = parse_document(experiment_dict(objective={"metric": None, "direction": "minimize"}), kubernetes=False)
    assert exp.spec.objective.metric == "val_accuracy"  # type: ignore[attr-defined]
    with pytest.raises(ManifestError) as err:
        parse_document(experiment_dict(budget={"maxTrials": None}), kubernetes=False)
    assert err.value.problems[0][0] == "spec.budget.maxTrials"
