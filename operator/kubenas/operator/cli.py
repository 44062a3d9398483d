"""``kubenas operator`` (runs the operator) and ``kubenas bench operator``."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import typer

app = typer.Typer(help="Run the Kubenas operator.")


@app.callback(invoke_without_command=True)
def operator(
    namespace: list[str] = typer.Option(
        [], "--namespace", "-n", help="Serve only these namespaces (repeatable; default: all namespaces)."
    ),
    all_namespaces: bool = typer.Option(False, "--all-namespaces", "-A", help="Serve every namespace (the default)."),
    kubeconfig: Path | None = typer.Option(None, help="Kubeconfig (default: $KUBECONFIG, ~/.kube/config, in-cluster)."),
    metrics_port: int = typer.Option(8000, help="Port of the Prometheus /metrics endpoint; -1 turns it off."),
    metrics_address: str = typer.Option("127.0.0.1", help="Address of the /metrics endpoint (0.0.0.0 in a pod)."),
    status_interval: float = typer.Option(1.0, help="Patch an experiment's status at most this often (seconds)."),
    liveness: str | None = typer.Option(
        None, help="Serve kopf's liveness probe at this URL, e.g. http://0.0.0.0:8081/healthz."
    ),
    leader_election: bool = typer.Option(
        False,
        "--leader-election/--no-leader-election",
        help="Run experiments only while holding a coordination.k8s.io Lease (several replicas; the others stand by).",
    ),
    leader_election_namespace: str | None = typer.Option(
        None, help="Namespace of the Lease (default: $POD_NAMESPACE, the service account's namespace, or default)."
    ),
    leader_election_name: str = typer.Option("kubenas-operator", help="Name of the Lease."),
    leader_election_lease_duration: float = typer.Option(
        15.0, help="Seconds a standby waits for the leader's renewal before taking over."
    ),
    leader_election_renew_deadline: float = typer.Option(
        10.0, help="Seconds the leader keeps acting without a successful renewal (shorter than the lease duration)."
    ),
    leader_election_retry_period: float = typer.Option(2.0, help="Seconds between two tries to take or renew."),
    log_format: str = typer.Option("json", help="json (one object per line) or plain."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Verbose logs."),
    debug: bool = typer.Option(False, "--debug", help="Debug logs, kopf's included."),
) -> None:
    """Watch SearchExperiments and run them: controller pods, Trials, trainer Jobs, status, events, metrics."""
    import kopf
    from prometheus_client import disable_created_metrics

    from kubenas.operator.leader import ElectionConfig, ElectionConfigError, default_namespace
    from kubenas.operator.runtime import OperatorConfig

    if namespace and all_namespaces:
        raise typer.BadParameter("--namespace and --all-namespaces exclude each other")
    from kubenas.insights.cluster import has_credentials

    if not has_credentials(str(kubeconfig) if kubeconfig else None):  # else kopf retries a traceback every minute
        typer.echo(
            "kubenas operator: no kubeconfig found (--kubeconfig, $KUBECONFIG or ~/.kube/config)"
            " and not running in a pod: no cluster to serve",
            err=True,
        )
        raise typer.Exit(2)
    election = None
    if leader_election:
        try:
            election = ElectionConfig(
                namespace=leader_election_namespace or default_namespace(),
                name=leader_election_name,
                lease_duration_s=leader_election_lease_duration,
                renew_deadline_s=leader_election_renew_deadline,
                retry_period_s=leader_election_retry_period,
            )
        except ElectionConfigError as err:
            raise typer.BadParameter(str(err)) from None
    config = OperatorConfig(
        kubeconfig=str(kubeconfig) if kubeconfig else None,
        metrics_port=None if metrics_port < 0 else metrics_port,
        metrics_address=metrics_address,
        status_interval_s=status_interval,
        election=election,
    )
    os.environ.update(config.to_env())
    if kubeconfig:
        os.environ["KUBECONFIG"] = str(kubeconfig)  # kopf's own login reads it too
    fmt = kopf.LogFormat.JSON if log_format == "json" else kopf.LogFormat.PLAIN
    kopf.configure(debug=debug, verbose=verbose, log_format=fmt, log_prefix=False)
    if not (verbose or debug):  # kopf reports every handled watch event at INFO: thousands per minute
        logging.getLogger("kopf").setLevel(logging.WARNING)
    disable_created_metrics()
    import kubenas.operator.handlers  # noqa: F401  (registers the handlers)

    # kopf itself always runs standalone: every replica watches (a warm cache), and the Lease, not
    # kopf's peering, decides which one runs the experiments (kopf's pause stops only its watches,
    # not the reconcilers' own tasks).
    kopf.run(
        standalone=True,
        clusterwide=not namespace,
        namespaces=namespace,
        liveness_endpoint=liveness,
    )
