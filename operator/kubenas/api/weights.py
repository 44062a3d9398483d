"""Where trials take their starting weights from: a checkpoint for fine-tuning (``initFrom``).

Inheritance from a parent is a flag of the trial template (``inheritWeights``); a checkpoint outside
the experiment is named here: a trial of another experiment (its output folder: ``model.pt`` and
``architecture.json``) or a file. The trainer copies the tensors that match by name and shape, so a
checkpoint trained on another dataset gives everything but the classifier.
"""

from __future__ import annotations

from pydantic import Field

from kubenas.api import kube
from kubenas.api.base import ApiModel, Rule
from kubenas.api.strategy import experiment_field


class InitFrom(ApiModel):
    """A checkpoint every trial starts from: a trial of ``experiment`` (its best when ``trial`` is not
    given, read once when the run starts and kept in the accepted spec), or ``file``.

    ``experiment``/``trial`` is a trial's output folder: locally ``trials/<trial>/output`` of the run
    ``results/<experiment>`` beside this one; on Kubernetes ``<path>/<experiment>/<trial>`` of this
    experiment's artifact store, so the source must have written to the same claim and path. ``file``
    is a ``model.pt`` or an output folder: a local path, or a path in the trainer container (a volume
    of the pod template, or under the artifact store's mount ``/kubenas/output``).
    """

    RULES = (
        Rule(
            "!has(self.trial) || has(self.experiment)",
            "trial names a trial of experiment: give experiment too",
            lambda i: i.trial is None or i.experiment is not None,
            ".trial",
        ),
        Rule(
            "has(self.file) != has(self.experiment)",
            "give either experiment (and optionally trial) or file",
            lambda i: (i.file is None) != (i.experiment is None),
            ".file",
        ),
    )

    experiment: str | None = experiment_field("The experiment whose trial's weights to start from.")
    trial: str | None = Field(
        None,
        min_length=1,
        max_length=kube.LABEL_MAX,
        pattern=kube.DNS1123_LABEL,
        description="That experiment's trial (default: its best, read once when this run starts).",
    )
    file: str | None = Field(
        None,
        min_length=1,
        max_length=4096,
        description="A model.pt or a trial's output folder (locally a path; in a pod a path in the trainer container).",
    )
