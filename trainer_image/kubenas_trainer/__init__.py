"""The Kubenas trainer: builds any candidate of the shipped search-space families in PyTorch, trains it and
reports its metrics through the trial contract (docs/trial-contract.md, docs/trainer.md)."""

__version__ = "0.1.0"
