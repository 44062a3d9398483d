"""The Prometheus scrape configuration for the operator, when no Prometheus Operator is there.

docs/monitoring.md shows this configuration, and the monitoring end-to-end test runs Debian's
prometheus with it against the test cluster: service discovery of the metrics Service's endpoints,
the ``job="kubenas-operator"`` label that the dashboard and the alerts select, and the alert rules.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubenas.packaging.paths import METRICS_JOB, NAMESPACE, RELEASE


def scrape_config(
    namespace: str = NAMESPACE,
    service: str = f"{RELEASE}-metrics",
    *,
    api_server: str | None = None,
    ca_file: Path | None = None,
    token_file: Path | None = None,
    interval: str | None = None,
) -> dict[str, Any]:
    """Scrape the pods behind the chart's metrics Service, found through its endpoints.

    Without ``api_server`` Prometheus uses its own in-cluster service account; the tests pass the
    loopback API server, its CA and a token of a ServiceAccount allowed to list endpoints.
    """
    sd: dict[str, Any] = {"role": "endpoints", "namespaces": {"names": [namespace]}}
    if api_server:
        sd["api_server"] = api_server
        if ca_file:
            sd["tls_config"] = {"ca_file": str(ca_file)}
        if token_file:
            sd["authorization"] = {"credentials_file": str(token_file)}
    # honor_labels: the series' own namespace label is the experiment's and must not be renamed
    # exported_namespace because the target (the operator pod) has a namespace too.
    job: dict[str, Any] = {"job_name": METRICS_JOB, "honor_labels": True}
    if interval:
        job["scrape_interval"] = interval
    job["kubernetes_sd_configs"] = [sd]
    job["relabel_configs"] = [
        {
            "source_labels": ["__meta_kubernetes_service_name", "__meta_kubernetes_endpoint_port_name"],
            "regex": f"{service};http-metrics",
            "action": "keep",
        },
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "kubernetes_namespace"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
    ]
    return job


def file_sd_config(targets_file: Path, interval: str | None = None) -> dict[str, Any]:
    """The same job fed by a targets file instead of Kubernetes discovery.

    Debian's prometheus package is built without the Kubernetes service discovery, so the
    end-to-end test does the discovery itself (:func:`endpoint_targets`) and writes the file.
    """
    job: dict[str, Any] = {"job_name": METRICS_JOB, "honor_labels": True}
    if interval:
        job["scrape_interval"] = interval
    job["file_sd_configs"] = [{"files": [str(targets_file)], "refresh_interval": "1s"}]
    return job


def endpoint_targets(slices: list[dict[str, Any]], port_name: str = "http-metrics") -> list[dict[str, Any]]:
    """file_sd target groups from a Service's EndpointSlices, as the ``endpoints`` role keeps them:
    ready endpoints on the named port, labelled with their namespace and pod."""
    groups = []
    for piece in slices:
        ports = [p["port"] for p in piece.get("ports") or [] if p.get("name") == port_name]
        if not ports:
            continue
        for endpoint in piece.get("endpoints") or []:
            if not (endpoint.get("conditions") or {}).get("ready"):
                continue
            labels = {"kubernetes_namespace": piece["metadata"]["namespace"]}
            if endpoint.get("targetRef"):
                labels["pod"] = endpoint["targetRef"]["name"]
            groups.append({"targets": [f"{address}:{ports[0]}" for address in endpoint["addresses"]], "labels": labels})
    return groups
