"""The training loop: learns digits, is reproducible on CPU, stops on a deadline or a signal, schedules LR."""

from __future__ import annotations

import math
import time
from dataclasses import replace

import pytest
import torch
from torch import nn

from kubenas_trainer.candidate import parse_candidate
from kubenas_trainer.data import load_dataset
from kubenas_trainer.errors import SettingsError
from kubenas_trainer.model import MacroConfig, build_network
from kubenas_trainer.runtime import configure
from kubenas_trainer.settings import Settings, resolve_settings
from kubenas_trainer.train import StopControl, Trainer, batch_count, lr_at

from .conftest import RESNET_LIKE, TINY

CPU = torch.device("cpu")


def _trainer(seed: int = 0, stop: StopControl | None = None, model: nn.Module | None = None, **kw: object) -> Trainer:
    settings = Settings.model_validate({**TINY, "dataset": "digits", "epochs": 3, **kw})
    configure(settings, seed, CPU)
    data = load_dataset(settings)
    if model is None:
        macro = MacroConfig(1, 10, settings.width, settings.stages, settings.cells_per_stage)
        model = build_network(parse_candidate(RESNET_LIKE), macro)
    return Trainer(model, data, settings, CPU, seed, stop)


def test_short_run_on_digits_beats_chance_by_far() -> None:
    epochs: list[int] = []
    trainer = _trainer()
    trainer.on_epoch = lambda stats: epochs.append(stats.epoch)
    fit = trainer.fit()
    assert fit.final.accuracy > 0.8  # chance is 0.1
    assert fit.stopped is None and fit.epochs == 3 and epochs == [1, 2, 3]
    assert fit.history[-1].val is fit.final  # the last epoch's validation is the final one, not redone
    assert fit.samples_per_second > 0


def test_same_seed_same_result_on_cpu() -> None:
    a, b = _trainer(seed=5).fit(), _trainer(seed=5).fit()
    assert (a.final.loss, a.final.accuracy) == (b.final.loss, b.final.accuracy)
    assert [s.train_loss for s in a.history] == [s.train_loss for s in b.history]
    c = _trainer(seed=6).fit()
    assert c.final.loss != a.final.loss


def test_deadline_stops_between_steps_and_still_evaluates() -> None:
    stop = StopControl(deadline=time.monotonic() + 0.3)
    fit = _trainer(stop=stop, epochs=1000).fit()
    assert fit.stopped == "deadline" and fit.epochs < 1000
    assert 0.0 <= fit.final.accuracy <= 1.0 and fit.final.step == fit.steps


def test_signal_before_training_reports_the_untrained_weights() -> None:
    stop = StopControl()
    stop.request()
    fit = _trainer(stop=stop).fit()
    assert fit.stopped == "signal" and fit.steps == 0 and math.isfinite(fit.final.loss)


def test_signal_after_an_epoch_reports_that_epochs_validation() -> None:
    stop = StopControl()
    trainer = _trainer(stop=stop, epochs=50)
    trainer.on_epoch = lambda stats: stop.request() if stats.epoch == 2 else None
    fit = trainer.fit()
    assert fit.stopped == "signal" and fit.epochs == 2
    assert fit.final is fit.history[1].val


class _Diverging(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1)) * float("inf")


def test_non_finite_loss_stops_training() -> None:
    fit = _trainer(model=_Diverging(), epochs=5).fit()
    assert fit.stopped == "diverged" and fit.epochs == 1


def test_lr_schedules() -> None:
    s = Settings(lr=0.1, epochs=10)
    assert lr_at(0, 100, s, 10) == pytest.approx(0.1)
    assert lr_at(50, 100, s, 10) == pytest.approx(0.05)
    assert lr_at(100, 100, s, 10) == pytest.approx(0.0)
    warm = Settings(lr=0.1, warmup_epochs=1)
    assert lr_at(0, 100, warm, 10) == pytest.approx(0.01) and lr_at(9, 100, warm, 10) == pytest.approx(0.1)
    one = Settings(lr=0.1, schedule="onecycle")
    assert lr_at(0, 100, one, 10) == pytest.approx(0.004) and lr_at(30, 100, one, 10) == pytest.approx(0.1)
    assert lr_at(99, 100, one, 10) < 0.001
    assert lr_at(42, 100, Settings(lr=0.3, schedule="constant"), 10) == 0.3


def test_batch_count_drops_a_lone_last_sample() -> None:
    assert (batch_count(10, 4), batch_count(9, 4), batch_count(3, 8)) == (3, 2, 1)


def _tabular_trainer(settings: Settings) -> Trainer:
    data = load_dataset(settings)
    macro = MacroConfig(
        data.sample_shape[0], data.num_classes, settings.width, settings.stages, settings.cells_per_stage
    )
    return Trainer(build_network(parse_candidate(RESNET_LIKE), macro), data, settings, CPU, 0)


def test_a_batch_of_one_is_refused_where_batch_norm_sees_one_value_per_channel() -> None:
    settings, _ = resolve_settings({**TINY, "dataset": "iris", "batchSize": 1, "epochs": 1}, {})
    with pytest.raises(SettingsError) as info:  # torch refused it mid-epoch: "Expected more than 1 value per channel"
        _tabular_trainer(settings)
    assert info.value.field == "settings.batchSize" and "at least 2 values per channel" in info.value.message
    assert _tabular_trainer(settings.model_copy(update={"batch_size": 2})).fit().steps > 0
    images = _trainer(batch_size=1, epochs=1)  # digits keep 4x4 maps at the last stage: one sample is enough
    images.data = replace(images.data, x_train=images.data.x_train[:8], y_train=images.data.y_train[:8])
    assert images.fit().steps > 0
