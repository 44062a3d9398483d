"""Command lines of the control-plane components, all bound to 127.0.0.1.

Kept apart from the process handling so the flags, the part worth reviewing, read as one list per
component.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kubenas_dev.cluster.pki import ClusterPKI, KeyPair

SERVICE_CIDR = "10.96.0.0/16"  # allocated, never routed: nobody connects to a ClusterIP here
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"


@dataclass(frozen=True)
class Layout:
    """Paths inside one cluster directory."""

    root: Path

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def agent_dir(self) -> Path:
        return self.root / "agent"

    def component_kubeconfig(self, component: str) -> Path:
        return self.root / f"{component}.kubeconfig"

    def cert_dir(self, component: str) -> Path:
        return self.root / "certs" / component

    def log(self, component: str) -> Path:
        return self.logs / f"{component}.log"


@dataclass(frozen=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    agent: int

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def etcd_args(binary: Path, layout: Layout, ports: Ports) -> list[str]:
    client = f"http://127.0.0.1:{ports.etcd_client}"
    peer = f"http://127.0.0.1:{ports.etcd_peer}"
    return [
        str(binary),
        "--name=default",
        f"--data-dir={layout.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=default={peer}",
        "--initial-cluster-state=new",
        # A throw-away store: skipping fsync makes the API several times faster on a shared disk.
        "--unsafe-no-fsync=true",
        "--quota-backend-bytes=2147483648",
        "--log-level=warn",
    ]


def apiserver_args(
    binary: Path,
    layout: Layout,
    ports: Ports,
    pki: ClusterPKI,
    serving: KeyPair,
    front_proxy: KeyPair,
) -> list[str]:
    return [
        str(binary),
        f"--etcd-servers=http://127.0.0.1:{ports.etcd_client}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={ports.apiserver}",
        f"--cert-dir={layout.cert_dir('kube-apiserver')}",
        f"--tls-cert-file={serving.cert}",
        f"--tls-private-key-file={serving.key}",
        f"--client-ca-file={pki.ca.cert}",
        f"--service-account-issuer={SA_ISSUER}",
        f"--service-account-key-file={pki.sa_pub}",
        f"--service-account-signing-key-file={pki.sa_key}",
        "--authorization-mode=Node,RBAC",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--allow-privileged=true",
        # The aggregation layer's front-proxy identity: without it every component logs a missing
        # requestheader CA, and aggregated API servers (metrics-server, ...) could not be added.
        f"--requestheader-client-ca-file={pki.ca.cert}",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={front_proxy.cert}",
        f"--proxy-client-key-file={front_proxy.key}",
        # Webhook, conversion and aggregated-API Services are called at their endpoints' addresses,
        # not their ClusterIPs (nothing routes those here): a controller on loopback (Kueue) can
        # serve webhooks through a selector-less Service whose Endpoints say 127.0.0.1:<port>.
        "--enable-aggregator-routing=true",
        "--profiling=false",
        "--enable-priority-and-fairness=false",
        "--v=1",
    ]


def _common_component_args(layout: Layout, component: str, port: int) -> list[str]:
    kubeconfig = layout.component_kubeconfig(component)
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--cert-dir={layout.cert_dir(component)}",
        "--leader-elect=false",  # one instance; leader election only delays the start
        "--kube-api-qps=100",
        "--kube-api-burst=200",
        "--v=1",
    ]


def controller_manager_args(binary: Path, layout: Layout, ports: Ports, pki: ClusterPKI) -> list[str]:
    return [
        str(binary),
        *_common_component_args(layout, "kube-controller-manager", ports.controller_manager),
        # Every default controller; the cloud ones switch themselves off without a cloud provider.
        "--controllers=*",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={pki.sa_key}",
        f"--root-ca-file={pki.ca.cert}",
        f"--cluster-signing-cert-file={pki.ca.cert}",
        f"--cluster-signing-key-file={pki.ca.key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--allocate-node-cidrs=false",
        # Faster reactions than production defaults: tests wait on these loops.
        "--node-monitor-period=2s",
        "--node-monitor-grace-period=20s",
        "--concurrent-gc-syncs=10",
        "--concurrent-job-syncs=50",  # the default 5 queues Jobs behind each other at 50 parallel trials
    ]


def scheduler_args(binary: Path, layout: Layout, ports: Ports) -> list[str]:
    return [str(binary), *_common_component_args(layout, "kube-scheduler", ports.scheduler)]
