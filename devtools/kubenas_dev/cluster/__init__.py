"""A real Kubernetes control plane for development and tests: etcd, kube-apiserver,
kube-controller-manager and kube-scheduler built from Go modules, plus a node agent that runs pods
as local processes."""
