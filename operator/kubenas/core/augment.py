"""The augmentation-policy expander: ``spec.searchSpace.augmentation`` as ordinary categorical decisions.

Each operation slot ``j`` of sub-policy ``k`` becomes three decisions, in this order:
``aug_<k>_<j>_op`` (an operation name), ``aug_<k>_<j>_prob`` and ``aug_<k>_<j>_mag`` (bin indices
``0 .. bins-1``). Bins are integers rather than the probabilities themselves so canonical ids stay
exact and a strategy's neighbourhood of a bin is the next bin. :func:`policy_of` reads a policy back
out of an architecture, for exports and reports; the trainer reads the same names.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kubenas.api.augment import AugmentationSpace
from kubenas.core.errors import SpecError


def slot_names(sub_policy: int, slot: int) -> tuple[str, str, str]:
    """The operation, probability-bin and magnitude-bin decision names of one slot."""
    stem = f"aug_{sub_policy}_{slot}"
    return f"{stem}_op", f"{stem}_prob", f"{stem}_mag"


def augmentation_choices(spec: AugmentationSpace) -> list[tuple[str, tuple[str | int, ...]]]:
    """Name and choices of three categorical decisions per slot, sub-policy by sub-policy, slot by slot.

    Plain pairs rather than ``Categorical`` objects: ``kubenas.core.space`` wraps them, so this module
    does not import the module that imports it.
    """
    out: list[tuple[str, tuple[str | int, ...]]] = []
    for k in range(spec.sub_policies):
        for j in range(spec.operations_per_sub_policy):
            op, prob, mag = slot_names(k, j)
            out += [
                (op, tuple(spec.operations)),
                (prob, tuple(range(spec.probability_bins))),
                (mag, tuple(range(spec.magnitude_bins))),
            ]
    return out


def augmentation_family(spec: AugmentationSpace) -> dict[str, Any]:
    """The shape recorded in ``SearchSpace.families['augmentation']`` (camelCase, as in the manifest)."""
    return {
        "subPolicies": spec.sub_policies,
        "operationsPerSubPolicy": spec.operations_per_sub_policy,
        "operations": list(spec.operations),
        "probabilityBins": spec.probability_bins,
        "magnitudeBins": spec.magnitude_bins,
    }


def policy_of(architecture: Mapping[str, Any], family: Mapping[str, Any]) -> list[list[dict[str, Any]]]:
    """The policy an architecture holds: per sub-policy, its operations with probability and magnitude in [0, 1].

    The magnitude is the fraction of the operation's largest magnitude; the trainer turns it into
    degrees, pixels or factors for the image at hand.
    """
    p_bins, m_bins = int(family["probabilityBins"]), int(family["magnitudeBins"])
    policy: list[list[dict[str, Any]]] = []
    for k in range(int(family["subPolicies"])):
        sub: list[dict[str, Any]] = []
        for j in range(int(family["operationsPerSubPolicy"])):
            op, prob, mag = slot_names(k, j)
            missing = next((n for n in (op, prob, mag) if n not in architecture), None)
            if missing is not None:
                raise SpecError(f"architecture.{missing}", "is missing")
            p, m = int(architecture[prob]), int(architecture[mag])
            sub.append(
                {
                    "operation": str(architecture[op]),
                    "probability": round(p / (p_bins - 1), 6),
                    "magnitude": round(m / (m_bins - 1), 6),
                    "probabilityBin": p,
                    "magnitudeBin": m,
                }
            )
        policy.append(sub)
    return policy


def join_policies(architectures: Sequence[Mapping[str, Any]], family: Mapping[str, Any]) -> dict[str, Any]:
    """One policy holding the sub-policies of every architecture in turn, renumbered ``aug_0_*`` onwards.

    AutoAugment's final policy is its five best policies joined this way: more sub-policies to draw
    from, and less weight on any one search trial's luck. Other decisions are left out.
    """
    subs, per = int(family["subPolicies"]), int(family["operationsPerSubPolicy"])
    joined: dict[str, Any] = {}
    for i, architecture in enumerate(architectures):
        for k in range(subs):
            for j in range(per):
                for old, new in zip(slot_names(k, j), slot_names(i * subs + k, j), strict=True):
                    if old not in architecture:
                        raise SpecError(f"architecture.{old}", "is missing")
                    joined[new] = architecture[old]
    return joined


def operation_frequencies(policies: Iterable[list[list[dict[str, Any]]]], weighted: bool = False) -> dict[str, float]:
    """How often each operation appears in ``policies``, as shares summing to 1, most frequent first.

    With ``weighted`` each appearance counts its probability, i.e. how often the operation is applied.
    """
    counts: Counter[str] = Counter()
    for policy in policies:
        for sub in policy:
            for step in sub:
                counts[step["operation"]] += step["probability"] if weighted else 1.0
    total = sum(counts.values())
    if total <= 0:
        return {}
    return {op: round(n / total, 4) for op, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))}
