"""``kubenas bench augment``: options that cannot run are refused before any arm trains."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from kubenas.bench import augment
from kubenas.cli import app


def test_a_strategy_that_cannot_search_the_policy_space_is_refused_up_front(monkeypatch: pytest.MonkeyPatch) -> None:
    # retrain needs settings the command cannot give: it used to fail after every baseline arm had trained
    monkeypatch.setattr(augment, "run_benchmark", lambda *a, **k: pytest.fail("trained with a strategy that fails"))
    out = CliRunner().invoke(app, ["bench", "augment", "--strategy", "retrain"])
    assert out.exit_code == 2 and "--strategy" in out.output and "retrain" in out.output, out.output


def test_the_search_is_built_as_the_command_checked_it() -> None:
    config = augment.BenchConfig(strategy="random", sub_policies=2, operations=("rotate", "cutout"))
    space, wire, strategy = augment.search_setup(config)
    assert wire["augmentation"]["subPolicies"] == 2 and "augmentation" in space.families
    assert set(strategy.ask()) == {d.name for d in space.decisions}
