"""Kubernetes' own syntax rules, as regular expressions both CEL (RE2) and Python accept.

The API server applies these to the objects the operator creates (a Service name, a label value, a
resource quantity); the CRD applies them to the fields those objects are made from, so a manifest
the operator could not turn into valid children is refused at admission instead.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

#: a DNS-1035 label (Service names): lower case, starts with a letter, at most 63 characters.
DNS1035_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
#: a DNS-1123 label (Job and pod names used as label values): starts with a letter or digit.
DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
#: a DNS-1123 subdomain (PriorityClass, Deployment, Secret names): labels joined by dots, 253 characters.
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
LABEL_MAX = 63
#: the label that puts a Job in a Kueue LocalQueue
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
SUBDOMAIN_MAX = 253
#: a label value: empty, or at most 63 alphanumerics, '-', '_' or '.' starting and ending alphanumeric.
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$"
#: a qualified name (label and taint keys): an optional DNS subdomain prefix and '/', then a name part.
QUALIFIED_NAME = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$"
)
QUALIFIED_NAME_MAX = SUBDOMAIN_MAX + 1 + LABEL_MAX
#: a resource quantity that is not negative: 500m, 2, 1.5Gi, 1e3 (the API server's own grammar).
QUANTITY = (
    r"^\+?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE][-+]?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
QUANTITY_MAX = 64
#: the resource names a container may request: the native ones, or an extended resource ``domain/name``.
RESOURCE_NAME = (
    r"^(cpu|memory|ephemeral-storage"
    r"|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+/[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$"
)
#: an image reference has no white space anywhere (the kubelet cannot pull one that does).
IMAGE = r"^\S+$"

_SUFFIXES = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}
_SPLIT = re.compile(r"^\+?([0-9.]+)([eE][-+]?[0-9.]+|[KMGTPE]i|[numkMGTPE])?$")


def matches(pattern: str, text: str) -> bool:
    """Whether ``text`` matches ``pattern`` in full, as CEL's ``matches`` with an anchored pattern."""
    return re.search(pattern, text) is not None


def quantity(value: int | str) -> Decimal | None:
    """The value of a resource quantity (``500m`` → 0.5), or None when it is not one."""
    if isinstance(value, int):
        return Decimal(value) if value >= 0 else None
    if not matches(QUANTITY, value):
        return None
    found = _SPLIT.match(value)
    if found is None:
        return None
    number, suffix = found.groups()
    try:
        if suffix and suffix[0] in "eE":
            return Decimal(number) * (Decimal(10) ** Decimal(suffix[1:]))
        return Decimal(number) * _SUFFIXES[suffix or ""]
    except (InvalidOperation, KeyError):
        return None


def is_whole(value: int | str) -> bool:
    """Whether a quantity is a whole number (extended resources such as GPUs come in units)."""
    q = quantity(value)
    return q is not None and q == q.to_integral_value()


def qualified_name_ok(key: str) -> bool:
    """A label or taint key: the regular expression plus the 253-character bound on its prefix."""
    prefix, _, _ = key.rpartition("/")
    return len(key) <= QUALIFIED_NAME_MAX and len(prefix) <= SUBDOMAIN_MAX and matches(QUALIFIED_NAME, key)


def check_labels(labels: dict[str, str]) -> dict[str, str]:
    """The API server's checks of an object's labels; raises ValueError naming the bad key or value."""
    for key, value in labels.items():
        if not qualified_name_ok(key):
            raise ValueError(f"label key {key!r} is not a qualified name")
        if len(value) > LABEL_MAX or not matches(LABEL_VALUE, value):
            raise ValueError(f"label value {value!r} of {key!r} is not a valid label value")
    return labels
