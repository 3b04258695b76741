"""Pictures of a search: the cells a genotype describes, and the architecture weights behind them.

:func:`plot_genotype` draws both cells of a genotype side by side, in the style of DARTS's figures (inputs
``c_{k-2}``, ``c_{k-1}`` on the left, intermediate nodes ``0..steps-1``, the output ``c_{k}`` on the right)
but with matplotlib alone, so no graphviz binary is needed. Edges are coloured by operation family, so a
cell that picked the sandglass block (or MobileNetV2's inverted residual) shows it at a glance.

:func:`plot_alphas` draws the softmax weights of a DARTS search as one heatmap per cell, one row per edge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._plot import pyplot, save_png
from ..errors import ConfigError
from .genotypes import Genotype, check_genotype

__all__ = ["plot_genotype", "plot_alphas", "op_family"]

# (substring of the op name, legend label, colour, line width). First match wins. The two mobile blocks
# come first, in colours no DARTS family uses and with thicker lines: whether a search picked them is
# the question these pictures are usually drawn to answer.
_FAMILIES: tuple[tuple[str, str, str, float], ...] = (
    ("sg_block", "sandglass block", "#d62728", 2.6),
    ("ir_block", "inverted residual", "#ff7f0e", 2.6),
    ("sep_conv", "separable conv", "#1f77b4", 1.5),
    ("dil_conv", "dilated conv", "#9467bd", 1.5),
    ("pool", "pooling", "#2ca02c", 1.5),
    ("skip_connect", "skip", "#8c564b", 1.5),
    ("none", "zero", "#9e9e9e", 1.0),
)
_OTHER = ("other", "#404040", 1.5)
_CONCAT_COLOUR = "#a8a8a8"

# Layout in data units; the axes use an equal aspect, so these are also proportions on the page.
_X_STEP = 2.4  # between consecutive intermediate nodes: room for one op label between them
_ROW_Y = 0.95  # intermediate nodes alternate above/below the axis, so skip-a-node edges run clear
_INPUT_Y = 1.45
_FIRST_X = 2.7  # inputs to node 0: the shortest edges, which still need room for a label
_INCH_PER_UNIT = 0.6
# Bends to try for each edge (matplotlib's arc3 ``rad``); the router picks the cheapest.
_RADS = (0.0, 0.15, -0.15, 0.3, -0.3, 0.45, -0.45, 0.6, -0.6)
# Where along an edge its label may sit, best first: the middle, then stepping outwards.
_LABEL_TS = (0.5, 0.42, 0.58, 0.35, 0.65, 0.28, 0.72, 0.22, 0.78)


def op_family(op: str) -> tuple[str, str, float]:
    """``(family label, colour, line width)`` an operation is drawn with; unknown names get a dark grey."""
    for key, label, colour, width in _FAMILIES:
        if key in op:
            return label, colour, width
    return _OTHER


@dataclass
class _Node:
    x: float
    y: float
    half_w: float
    half_h: float
    text: str
    colour: str
    round: bool  # a circle (intermediate node) rather than a rounded box (input, output)

    @property
    def centre(self) -> np.ndarray:
        return np.array([self.x, self.y])

    def distance(self, points: np.ndarray) -> np.ndarray:
        """Distance from each point to the node's box (0 inside)."""
        dx = np.maximum(np.abs(points[:, 0] - self.x) - self.half_w, 0.0)
        dy = np.maximum(np.abs(points[:, 1] - self.y) - self.half_h, 0.0)
        return np.hypot(dx, dy)


@dataclass
class _Edge:
    src: int
    dst: int  # -1: the cell output
    op: str | None  # None: a concat arrow into the output
    rad: float = 0.0


def _bezier(a: np.ndarray, b: np.ndarray, rad: float, ts: np.ndarray) -> np.ndarray:
    """Points of matplotlib's ``arc3`` curve from ``a`` to ``b``. arc3 puts its control point in display
    space; with an equal aspect that is the same curve as in data space, so labels can be placed on it."""
    d = b - a
    control = (a + b) / 2 + rad * np.array([d[1], -d[0]])
    ts = ts[:, None]
    return (1 - ts) ** 2 * a + 2 * (1 - ts) * ts * control + ts**2 * b


def _cell_nodes(steps: int) -> dict[int, _Node]:
    """Node id -> node: 0, 1 the inputs, 2..steps+1 the intermediate nodes, -1 the output."""
    nodes = {
        0: _Node(0.0, _INPUT_Y, 0.5, 0.27, "$c_{k-2}$", "#b5d6a7", False),
        1: _Node(0.0, -_INPUT_Y, 0.5, 0.27, "$c_{k-1}$", "#b5d6a7", False),
    }
    for i in range(steps):
        y = 0.0 if steps == 1 else (_ROW_Y if i % 2 == 0 else -_ROW_Y)
        nodes[i + 2] = _Node(_FIRST_X + _X_STEP * i, y, 0.3, 0.3, str(i), "#add8e6", True)
    nodes[-1] = _Node(_FIRST_X + _X_STEP * (steps - 1) + 2.1, 0.0, 0.4, 0.27, "$c_{k}$", "#eee8aa", False)
    return nodes


def _route(edges: list[_Edge], nodes: dict[int, _Node]) -> None:
    """Give each edge the bend that keeps it off other nodes and off the edges routed before it.

    Greedy, shortest edges first: short edges have the least room to dodge, long ones can arc around.
    Crossing another edge is fine (a layered drawing cannot avoid it); running alongside one, or through a
    node, is what makes a drawing unreadable, so only that costs. Two ops on the same pair of nodes are
    routed together, bent symmetrically apart so that both they and their labels stay apart."""
    ts = np.linspace(0.06, 0.94, 48)
    routed: list[np.ndarray] = []

    def cost(edge: _Edge, rad: float) -> float:
        a, b = nodes[edge.src].centre, nodes[edge.dst].centre
        points = _bezier(a, b, rad, ts)
        total = 0.8 * abs(rad) + 1.5 * rad**2  # straight is clearest; big arcs also make the figure tall
        for key, node in nodes.items():
            if key not in (edge.src, edge.dst):
                total += 25.0 * np.clip(0.35 - node.distance(points), 0, None).sum()
        near_end = min(0.7, 0.25 * np.linalg.norm(b - a))  # edges meeting at a node touch there anyway
        free = points[(np.linalg.norm(points - a, axis=1) > near_end) & (np.linalg.norm(points - b, axis=1) > near_end)]
        for curve in routed:
            if len(free):
                gaps = np.linalg.norm(free[:, None, :] - curve[None, :, :], axis=2).min(axis=1)
                # A crossing, even a shallow one, passes within reach for a few samples only.
                total += 0.25 * max(0, np.count_nonzero(gaps < 0.22) - 6)
        return total

    def length(pair: tuple[int, int]) -> float:
        return float(np.linalg.norm(nodes[pair[1]].centre - nodes[pair[0]].centre))

    groups: dict[tuple[int, int], list[_Edge]] = {}
    for edge in edges:
        groups.setdefault((edge.src, edge.dst), []).append(edge)
    for (src, dst), group in sorted(groups.items(), key=lambda item: length(item[0])):
        spread = [0.4 * (i - (len(group) - 1) / 2) for i in range(len(group))]
        shift = min(_RADS, key=lambda r: sum(cost(e, r + d) for e, d in zip(group, spread)))
        for edge, d in zip(group, spread):
            edge.rad = shift + d
            routed.append(_bezier(nodes[src].centre, nodes[dst].centre, edge.rad, np.linspace(0, 1, 60)))


def _cell_edges(cell: Sequence[tuple[str, int]], concat: Sequence[int]) -> list[_Edge]:
    edges = [_Edge(src, index // 2 + 2, op) for index, (op, src) in enumerate(cell)]
    return edges + [_Edge(node, -1, None) for node in concat]


def _extent(nodes: dict[int, _Node], edges: list[_Edge]) -> tuple[float, float, float, float]:
    """Data limits that hold every node and curve, with a margin for the labels."""
    points = [np.array([[n.x - n.half_w, n.y - n.half_h], [n.x + n.half_w, n.y + n.half_h]]) for n in nodes.values()]
    ts = np.linspace(0, 1, 40)
    points += [_bezier(nodes[e.src].centre, nodes[e.dst].centre, e.rad, ts) for e in edges]
    allp = np.concatenate(points)
    (x0, y0), (x1, y1) = allp.min(axis=0), allp.max(axis=0)
    return x0 - 0.3, x1 + 0.3, y0 - 0.45, y1 + 0.45


def _draw_cell(ax: Any, nodes: dict[int, _Node], edges: list[_Edge], limits: tuple[float, ...], title: str) -> list:
    """Draw nodes and arrows (labels come later, once the layout is final); return the node patches."""
    from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch

    ax.set_xlim(limits[0], limits[1])
    ax.set_ylim(limits[2], limits[3])
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title, fontsize=11)
    patches = {}
    for key, node in nodes.items():
        if node.round:
            patch = Circle((node.x, node.y), node.half_w, fc=node.colour, ec="#555555", lw=1.0, zorder=3)
        else:
            patch = FancyBboxPatch(
                (node.x - node.half_w, node.y - node.half_h),
                2 * node.half_w,
                2 * node.half_h,
                boxstyle="round,pad=0,rounding_size=0.1",
                fc=node.colour,
                ec="#555555",
                lw=1.0,
                zorder=3,
            )
        ax.add_patch(patch)
        patches[key] = patch
        ax.text(node.x, node.y, node.text, ha="center", va="center", fontsize=10, zorder=4)
    for edge in edges:
        colour, width = (_CONCAT_COLOUR, 1.1) if edge.op is None else op_family(edge.op)[1:]
        ax.add_patch(FancyArrowPatch(
            nodes[edge.src].centre, nodes[edge.dst].centre, connectionstyle=f"arc3,rad={edge.rad}",
            arrowstyle="-|>", mutation_scale=9 + 2 * width, lw=width, color=colour,
            patchA=patches[edge.src], patchB=patches[edge.dst], shrinkA=1, shrinkB=1, zorder=2,
            linestyle=":" if edge.op == "none" else "-",
        ))  # fmt: skip
    return list(patches.values())


def _place_labels(fig: Any, cells: list[tuple[Any, dict[int, _Node], list[_Edge], list]]) -> None:
    """Put each op label on its edge where it covers the fewest other labels, nodes and edge lines.

    Works in display space with the real text extents, after the layout is final (save_png's second
    tight_layout finds the same layout, since nothing sticks out of the axes)."""
    fig.tight_layout()
    renderer = fig.canvas.get_renderer()
    ts_dense = np.linspace(0, 1, 80)
    for ax, nodes, edges, node_patches in cells:
        to_display = ax.transData.transform
        curves = [to_display(_bezier(nodes[e.src].centre, nodes[e.dst].centre, e.rad, ts_dense)) for e in edges]
        taken = [patch.get_window_extent(renderer) for patch in node_patches]
        # Long edges first: they have the most room, short ones then fill in where they can.
        order = sorted(
            (i for i, e in enumerate(edges) if e.op is not None),
            key=lambda i: -np.linalg.norm(nodes[edges[i].dst].centre - nodes[edges[i].src].centre),
        )
        for i in order:
            edge = edges[i]
            colour = op_family(edge.op)[1]
            text = ax.text(
                0,
                0,
                edge.op,
                ha="center",
                va="center",
                fontsize=7,
                color=colour,
                zorder=5,
                bbox={"boxstyle": "round,pad=0.18", "fc": "white", "ec": colour, "lw": 0.6},
            )
            a, b = nodes[edge.src].centre, nodes[edge.dst].centre
            best = None
            for rank, t in enumerate(_LABEL_TS):
                position = _bezier(a, b, edge.rad, np.array([t]))[0]
                text.set_position(position)
                box = text.get_window_extent(renderer).padded(5)
                cost = 0.05 * rank
                cost += sum(_overlap(box, other) for other in taken) / max(box.width * box.height, 1.0) * 20
                for j, curve in enumerate(curves):
                    if j != i:
                        inside = (
                            (curve[:, 0] > box.x0)
                            & (curve[:, 0] < box.x1)
                            & (curve[:, 1] > box.y0)
                            & (curve[:, 1] < box.y1)
                        )
                        cost += 0.4 * np.count_nonzero(inside)  # on a crossing: which edge is it?
                if best is None or cost < best[0]:
                    best = (cost, position, box)
            text.set_position(best[1])
            taken.append(best[2])


def _overlap(a: Any, b: Any) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(w, 0.0) * max(h, 0.0)


def plot_genotype(genotype: Genotype, output: str | Path, title: str | None = None, overwrite: bool = True) -> Path:
    """Draw the normal and the reduction cell of ``genotype`` side by side into the PNG ``output``.

    Inputs ``c_{k-2}``, ``c_{k-1}`` sit on the left, intermediate nodes (numbered 0.. as in DARTS's figures)
    step left to right alternating up and down, and ``c_{k}`` on the right collects the concatenated nodes
    (grey arrows). Op edges are coloured by family, with a legend of the families present."""
    plt = pyplot()  # first: without matplotlib, the error names the extra that installs it
    from matplotlib.lines import Line2D

    genotype = check_genotype(genotype)
    output = Path(output)
    cells = []
    for cell, concat, name in (
        (genotype.normal, genotype.normal_concat, "normal cell"),
        (genotype.reduce, genotype.reduce_concat, "reduction cell"),
    ):
        nodes = _cell_nodes(len(cell) // 2)
        edges = _cell_edges(cell, concat)
        _route(edges, nodes)
        cells.append((nodes, edges, _extent(nodes, edges), name))

    widths = [c[2][1] - c[2][0] for c in cells]
    height = max(c[2][3] - c[2][2] for c in cells)
    # Scale so the figure stays on a page however many steps; equal aspect keeps the proportions.
    scale = min(_INCH_PER_UNIT, 22.0 / sum(widths))
    fig = plt.figure(figsize=(sum(widths) * scale + 0.6, height * scale + 1.3 + (0.35 if title else 0)))
    grid = fig.add_gridspec(2, 2, width_ratios=widths, height_ratios=[height * scale, 0.45])
    drawn = []
    for column, (nodes, edges, limits, name) in enumerate(cells):
        ax = fig.add_subplot(grid[0, column])
        drawn.append((ax, nodes, edges, _draw_cell(ax, nodes, edges, limits, name)))

    ops = [op for cell in (genotype.normal, genotype.reduce) for op, _ in cell]
    families = {op_family(op) for op in ops}
    order = [f[1:] for f in _FAMILIES] + [_OTHER]
    handles = [
        Line2D([], [], color=colour, lw=width, label=label, linestyle=":" if label == "zero" else "-")
        for label, colour, width in order
        if (label, colour, width) in families
    ]
    handles.append(Line2D([], [], color=_CONCAT_COLOUR, lw=1.1, label="concat into $c_{k}$"))
    legend_ax = fig.add_subplot(grid[1, :])
    legend_ax.axis("off")
    legend_ax.legend(
        handles=handles, loc="center", ncol=len(handles), frameon=False, fontsize=8, handlelength=2.2, columnspacing=1.6
    )
    if title:
        fig.suptitle(title, fontsize=12)
    try:
        _place_labels(fig, drawn)
        return save_png(fig, output, overwrite=overwrite)
    finally:
        plt.close(fig)  # save_png closes it too, but not when the write fails (e.g. a missing folder)


def _edge_names(steps: int) -> list[str]:
    """Row labels in the order DARTS stores edges: node by node, each node's inputs in order."""

    def source(j: int) -> str:
        return ("$c_{k-2}$", "$c_{k-1}$")[j] if j < 2 else f"n{j - 2}"

    return [f"n{node} ← {source(j)}" for node in range(steps) for j in range(node + 2)]


def _as_matrix(weights: Any, steps: int, columns: int, name: str) -> np.ndarray:
    rows = steps * (steps + 3) // 2
    if hasattr(weights, "detach"):  # a torch tensor, possibly on a GPU and needing grad
        weights = weights.detach().float().cpu().numpy()
    try:
        matrix = np.asarray(weights, dtype=float)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a numeric [edges, ops] array, got {type(weights).__name__}.") from None
    if matrix.shape != (rows, columns):
        raise ConfigError(
            f"{name} has shape {list(matrix.shape)}, expected [{rows}, {columns}]: one row per "
            f"edge of a cell with steps={steps}, one column per op."
        )
    if not np.isfinite(matrix).all():
        raise ConfigError(f"{name} holds NaN or infinite values; the search diverged before these weights.")
    return matrix


def plot_alphas(
    weights_normal: Any,
    weights_reduce: Any,
    ops: Sequence[str],
    output: str | Path,
    steps: int = 4,
    title: str | None = None,
) -> Path:
    """Heatmaps of a search's softmax architecture weights, normal cell left, reduction cell right.

    ``weights_*`` are ``[edges, len(ops)]`` tensors or arrays, edges ordered node by node as DARTS stores
    them (node 0 reads ``c_{k-2}``, ``c_{k-1}``; node 1 also node 0; ...). Both share one colour scale so
    the cells compare; the largest weight of each edge is written in bold."""
    plt = pyplot()  # first: without matplotlib, the error names the extra that installs it
    from matplotlib.colors import Normalize

    if not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"steps must be a positive integer, got {steps!r}.")
    ops = list(ops)
    if not ops:
        raise ConfigError("ops must name at least one operation.")
    edges = steps * (steps + 3) // 2
    matrices = [
        _as_matrix(w, steps, len(ops), name)
        for w, name in ((weights_normal, "weights_normal"), (weights_reduce, "weights_reduce"))
    ]
    output = Path(output)
    low = min(0.0, *(float(m.min()) for m in matrices))
    high = max(float(m.max()) for m in matrices)
    norm = Normalize(vmin=low, vmax=high if high > low else low + 1.0)

    width = min(max(0.5 * len(ops) + 1.6, 3.5), 10.0)
    height = min(max(0.27 * edges + 1.8, 3.0), 16.0)
    fig = plt.figure(figsize=(2 * width + 1.0, height + (0.35 if title else 0)))
    axes = list(fig.subplots(1, 2))
    names = _edge_names(steps)
    boundaries = np.cumsum([node + 2 for node in range(steps)])[:-1] - 0.5
    image = None
    for ax, matrix, name in zip(axes, matrices, ("normal cell", "reduction cell")):
        image = ax.imshow(matrix, cmap="viridis", norm=norm, aspect="auto", interpolation="nearest")
        ax.set_title(name, fontsize=11)
        ax.set_xticks(range(len(ops)), ops, rotation=40, ha="right", rotation_mode="anchor", fontsize=8)
        ax.set_yticks(range(edges), names, fontsize=8)
        ax.tick_params(length=0)
        for y in boundaries:  # white rules between nodes, so each node's inputs read as a group
            ax.axhline(y, color="white", lw=2)
    # An inset of the right heatmap: tight_layout then keeps it beside that heatmap instead of spacing a
    # third column as widely as the tick labels between the heatmaps need.
    fig.colorbar(image, cax=axes[1].inset_axes([1.03, 0.0, 0.035, 1.0]), label="softmax weight")
    if title:
        fig.suptitle(title, fontsize=12)
    fig.tight_layout()

    fontsize = 6.5
    for ax, matrix in zip(axes, matrices):
        box = ax.get_window_extent()
        cell_w = box.width / len(ops) * 72 / fig.dpi  # in points, like the font size
        cell_h = box.height / edges * 72 / fig.dpi
        if cell_w < 4 * 0.62 * fontsize + 2 or cell_h < 1.2 * fontsize:
            continue  # too many cells for their numbers to be legible: the colours alone have to do
        for r, row in enumerate(matrix):
            strongest = int(row.argmax())
            for c, value in enumerate(row):
                ax.text(
                    c,
                    r,
                    f"{value:.2f}",
                    ha="center",
                    va="center",
                    fontsize=fontsize,
                    color="black" if norm(value) > 0.55 else "white",  # viridis is dark at the low end
                    fontweight="bold" if c == strongest else "normal",
                )
    try:
        return save_png(fig, output)
    finally:
        plt.close(fig)
