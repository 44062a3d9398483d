"""The node agent: the stand-in for the kubelet and the container runtime.

It registers Nodes, keeps their leases and Ready condition fresh, and runs every pod bound to them
as local processes with real status transitions. Everything else (scheduling, Jobs, garbage
collection, EndpointSlices, RBAC) is the real control plane's work.
"""
