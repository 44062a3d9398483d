"""Kubenas: Kubernetes-native neural architecture search.

Layers, imported only downward (api ← core ← adapters; tests/unit/test_layering.py checks it):

- ``kubenas.api``: the pydantic models of the ``kubenas.io/v1alpha1`` resources, source of the CRDs.
- ``kubenas.core``: pure search logic (spaces, strategies, the experiment engine). No I/O.
- ``kubenas.local``, ``kubenas.bench``, ``kubenas.controller``, ``kubenas.operator``, ``kubenas.insights``,
  ``kubenas.load``, ``kubenas.packaging``, ``kubenas.cli``: thin adapters that drive the core.

The development tools (test control plane, fixtures, operator benchmark) are the separate
``kubenas_dev`` package in devtools/, which this package never imports.
"""

__version__ = "0.1.0"
