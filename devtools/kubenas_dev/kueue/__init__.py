"""Kueue on the development cluster: its controller built from the Go module proxy, its CRDs,
RBAC and webhooks installed as its Helm chart ships them, the controller run as a local process."""
