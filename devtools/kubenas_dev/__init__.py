"""Kubenas development tools: what tests and benchmarks need and the product does not.

The test control plane (``cluster``: etcd, kube-apiserver, controller-manager, scheduler and a node
agent), the pytest fixtures built on it, the operator harness and benchmark, and the monitoring test
helpers. A development install brings this package (``make deps``); the operator image and a plain
``pip install .`` do not. It imports ``kubenas``; ``kubenas`` never imports it: the ``kubenas``
command finds its extra commands through the ``kubenas.commands`` entry points declared here.
"""
