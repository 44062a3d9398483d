"""Packaging: the Helm chart's generated parts, the plain kubectl bundle and the monitoring queries.

Everything a user installs is either written by hand in ``charts/kubenas`` (templates, values,
alert rules) or generated here from one source (the CRDs from the API models, the Grafana dashboard
from :mod:`kubenas.packaging.dashboard`, the bundle from the chart itself). ``kubenas chart
generate`` writes the generated parts and ``kubenas chart check`` fails when any has drifted.
"""
