"""Kubenas: Kubernetes-native neural architecture search.

Layers, imported only downward:

- ``kubenas.core``: pure search logic (spaces, strategies, the experiment engine). No I/O.
- ``kubenas.api``: the pydantic models of the ``kubenas.io/v1alpha1`` resources, source of the CRDs.
- ``kubenas.local``, ``kubenas.bench``, ``kubenas.operator``: thin adapters that drive the core.
"""

__version__ = "0.1.0"
