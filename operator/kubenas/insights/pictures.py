"""Pictures of architectures and of importance, drawn with matplotlib (only where it is installed).

matplotlib comes with the ``torch`` extra; the operator image has none, so every entry point returns
``None`` instead of a path when it is missing and callers carry on with the JSON and tables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kubenas.insights.genotype import Graph, graph_of, is_conv, parameter_free
from kubenas.insights.importance import Importance

#: shorter operation names for edge labels (NAS-Bench-201's are long)
_SHORT = (("nor_conv_", "conv"), ("_pool_", "pool"), ("_pool", "pool"), ("skip_connect", "skip"))
_CHAIN_ROW = 6  # chain layers per row before the drawing wraps


def pyplot() -> Any | None:
    """matplotlib.pyplot on the Agg backend, or None where matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def available() -> bool:
    return pyplot() is not None


def short(op: str) -> str:
    for long, brief in _SHORT:
        op = op.replace(long, brief)
    return op


def _colour(op: str) -> str:
    if is_conv(op):
        return "#1f77b4"
    return "#2ca02c" if parameter_free(op) else "#9467bd"


def _positions(g: Graph) -> list[tuple[float, float]]:
    """Cells on one line (edges arc over and under it); chains snake in rows, so a wrap is a short step down."""
    if g.kind == "chain":
        out = []
        for i in range(len(g.nodes)):
            row, col = divmod(i, _CHAIN_ROW + 1)
            out.append((float(col if row % 2 == 0 else _CHAIN_ROW - col), -1.2 * row))
        return out
    return [(1.4 * i, 0.0) for i in range(len(g.nodes))]


def draw(ax: Any, architecture: Mapping[str, Any], title: str = "") -> None:
    """Draw one architecture on ``ax``: feature maps as circles, operations as labelled arrows."""
    g = graph_of(architecture)
    ax.set_axis_off()
    ax.set_aspect("equal", adjustable="box")
    ax.set_title(title, fontsize=9)
    if g.kind == "none":
        ax.text(0.5, 0.5, "no cell or layers", ha="center", va="center", transform=ax.transAxes, fontsize=8)
    pos = _positions(g)
    for s, t, op in g.edges:
        (x1, y1), (x2, y2) = pos[s], pos[t]
        span = t - s if g.kind == "cell" else 1
        rad = 0.0 if span == 1 else (0.28 + 0.08 * (span - 2)) * (1 if (span + s) % 2 else -1)
        colour = _colour(op)
        ax.annotate(
            "",
            xy=(x2, y2),
            xytext=(x1, y1),
            arrowprops={
                "arrowstyle": "-|>",
                "color": colour,
                "lw": 1.4,
                "shrinkA": 13,
                "shrinkB": 14,
                "connectionstyle": f"arc3,rad={rad}",
            },
        )
        # the arc's midpoint: half way to matplotlib's arc3 control point
        mx, my = (x1 + x2) / 2 + 0.5 * rad * (y2 - y1), (y1 + y2) / 2 - 0.5 * rad * (x2 - x1)
        ax.text(mx, my, short(op), fontsize=6.5, ha="center", va="center", color=colour,
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.9})  # fmt: skip
    for (x, y), label in zip(pos, g.nodes, strict=True):
        ax.add_patch(_circle(x, y))
        ax.text(x, y, label, ha="center", va="center", fontsize=7, zorder=4)
    if pos:
        xs, ys = [p[0] for p in pos], [p[1] for p in pos]
        depth = max(1, len(g.nodes) - 1) * 0.4 if g.kind == "cell" else 0.4
        ax.set_xlim(min(xs) - 0.5, max(xs) + 0.5)
        ax.set_ylim(min(ys) - depth - 0.2, max(ys) + depth + 0.2)
    if g.hyperparameters:
        text = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in g.hyperparameters)
        ax.text(0.5, 0.0, text, transform=ax.transAxes, ha="center", va="top", fontsize=7, wrap=True)


def _circle(x: float, y: float) -> Any:
    from matplotlib.patches import Circle

    return Circle((x, y), 0.17, fc="#f2f2f2", ec="#333333", lw=1.0, zorder=3)


def save_architecture(path: Path, architecture: Mapping[str, Any], title: str = "") -> Path | None:
    """One architecture in one PNG; None without matplotlib."""
    plt = pyplot()
    if plt is None:
        return None
    g = graph_of(architecture)
    width = min(_CHAIN_ROW + 1, max(3, len(g.nodes))) * 1.3 + 0.6
    fig, ax = plt.subplots(figsize=(width, 2.8 if g.kind != "chain" else 1.2 + 1.3 * (1 + len(g.nodes) // 7)))
    draw(ax, architecture, title)
    fig.tight_layout()
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return path


def save_gallery(path: Path, entries: Sequence[tuple[str, Mapping[str, Any]]], columns: int = 3) -> Path | None:
    """Several architectures side by side (``(title, architecture)`` each); None without matplotlib."""
    plt = pyplot()
    if plt is None or not entries:
        return None
    cols = min(columns, len(entries))
    rows = -(-len(entries) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, (title, arch) in zip(axes.flat, entries, strict=False):
        draw(ax, arch, title)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def save_importance(path: Path, imp: Importance, metric: str, sign: float = 1.0, shown: int = 3) -> Path | None:
    """importance.png: importance per decision, and how each choice of the top ``shown`` shifts ``metric``."""
    plt = pyplot()
    if plt is None or not imp.scores:
        return None
    top = [name for name, _ in imp.scores[:shown]]
    fig, axes = plt.subplots(1, 1 + len(top), figsize=(4.2 + 3.2 * len(top), 3.6), squeeze=False)
    ax = axes[0][0]
    names = [n for n, _ in imp.scores][::-1]
    ax.barh(names, [s for _, s in imp.scores][::-1], color="#1f77b4")
    ax.set_xlabel(f"importance ({imp.evaluator}, {imp.trials} trials)")
    ax.set_title("what explains " + metric, fontsize=10)
    ax.tick_params(axis="y", labelsize=8)
    for ax, name in zip(axes[0][1:], top, strict=True):
        effects = imp.effects.get(name, ())
        labels = [short(e.choice) for e in effects][::-1]
        shifts = [sign * e.shift for e in effects][::-1]
        ax.barh(labels, shifts, color=["#2ca02c" if s * sign >= 0 else "#d62728" for s in shifts])
        ax.axvline(0, color="#333333", lw=0.8)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(f"{metric} vs mean")
        ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
