"""Chapter 3's plots: attention patterns (static and an ipywidgets explorer), per-head score
grids, per-token loss, and the phase change across training.

Every function returns its matplotlib Figure (or the widget), closed to pyplot so that a
notebook shows it exactly once when it is the cell's value and tests can inspect it headless.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from jaxtyping import Float
from matplotlib.figure import Figure
from torch import Tensor

from mi_course.viz.figures import finish, to_numpy


# --- attention patterns ----------------------------------------------------------------------


def _label_axes(ax: Any, labels: Sequence[str], fontsize: float) -> None:
    ticks = np.arange(len(labels))
    ax.set_xticks(ticks, labels, rotation=90, fontsize=fontsize)
    ax.set_yticks(ticks, labels, fontsize=fontsize)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")


def plot_attention(
    patterns: Float[Tensor, "head query key"],
    labels: Sequence[str],
    head_names: Sequence[str] | None = None,
    title: str | None = None,
    cols: int = 4,
) -> Figure:
    """One heatmap per head, rows = queries, columns = keys, both labelled with their tokens.

    A previous-token head is a line just below the diagonal; an induction head on repeated
    tokens is a line `seg_len - 1` below it, in the second copy only.
    """
    patterns = to_numpy(patterns)
    if patterns.ndim == 2:
        patterns = patterns[None]
    n_heads, n_query, n_key = patterns.shape
    if len(labels) != n_key or n_query != n_key:
        raise ValueError(f"need a square pattern and one label per position; got {patterns.shape[1:]} "
                         f"and {len(labels)} labels")
    names = list(head_names) if head_names is not None else [f"head {h}" for h in range(n_heads)]
    cols = min(cols, n_heads)
    rows = math.ceil(n_heads / cols)
    size = 2.2 + 0.12 * n_key
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows), squeeze=False)
    fontsize = max(3.0, min(9.0, 300 / n_key))
    for index, ax in enumerate(axes.flat):
        if index >= n_heads:
            ax.axis("off")
            continue
        image = ax.imshow(patterns[index], cmap="Blues", vmin=0.0, vmax=1.0)
        _label_axes(ax, labels, fontsize)
        ax.set_title(names[index])
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.6, label="attention")
    if title:
        fig.suptitle(title)
    plt.close(fig)
    return fig


def widgets_available() -> bool:
    """True inside a running IPython kernel with ipywidgets installed (e.g. JupyterLab)."""
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def attention_explorer(
    patterns: Float[Tensor, "layer head query key"],
    labels: Sequence[str],
    use_widgets: bool | None = None,
) -> Any:
    """Pick a layer and a head and see its pattern; a static grid of all heads without widgets.

    `use_widgets=None` uses widgets when `widgets_available()`. The widget's `figure` attribute
    holds the figure currently shown, so the explorer can be driven and inspected headless.
    """
    patterns = patterns.detach().cpu()
    if patterns.ndim != 4:
        raise ValueError(f"patterns must have shape (layer, head, query, key), got {tuple(patterns.shape)}")
    n_layers, n_heads = patterns.shape[:2]
    if use_widgets is None:
        use_widgets = widgets_available()
    if use_widgets:
        try:
            import ipywidgets as widgets
        except ImportError:
            use_widgets = False
    if not use_widgets:
        names = [f"L{layer}H{head}" for layer in range(n_layers) for head in range(n_heads)]
        return plot_attention(patterns.flatten(0, 1), labels, names, cols=n_heads)

    from IPython.display import display

    layer = widgets.Dropdown(options=list(range(n_layers)), value=0, description="layer")
    head = widgets.Dropdown(options=list(range(n_heads)), value=0, description="head")
    out = widgets.Output()
    box = widgets.VBox([widgets.HBox([layer, head]), out])

    def draw(_: Any = None) -> None:
        box.figure = plot_attention(patterns[layer.value, head.value], labels, [f"L{layer.value}H{head.value}"])
        with out:
            out.clear_output(wait=True)
            display(box.figure)

    layer.observe(draw, names="value")
    head.observe(draw, names="value")
    draw()
    return box


# --- per-head scores and losses -----------------------------------------------------------------


def plot_head_scores(
    scores: Float[Tensor, "layer head"], title: str, label: str = "score", centre: bool = False
) -> Figure:
    """A layer x head grid with each value written in its cell: detector scores, attributions,
    ablation damage. `centre` uses a diverging colour map around 0 (for signed values)."""
    values = to_numpy(scores)
    n_layers, n_heads = values.shape
    fig, ax = plt.subplots(figsize=(1.1 * n_heads + 2.0, 0.8 * n_layers + 1.4))
    if centre:
        limit = float(np.abs(values).max()) or 1.0
        image = ax.imshow(values, cmap="RdBu", vmin=-limit, vmax=limit)
    else:
        image = ax.imshow(values, cmap="viridis")
    for (layer, head), value in np.ndenumerate(values):
        ax.text(head, layer, f"{value:.2f}", ha="center", va="center", color="black",
                bbox={"facecolor": "white", "alpha": 0.6, "linewidth": 0, "pad": 1})
    ax.set_xticks(range(n_heads), [f"H{h}" for h in range(n_heads)])
    ax.set_yticks(range(n_layers), [f"L{layer}" for layer in range(n_layers)])
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label=label)
    return finish(fig)


def plot_per_token_loss(
    curves: Mapping[str, Float[Tensor, "pos_minus_1"]], seg_len: int, title: str = "loss per token"
) -> Figure:
    """Mean loss against the position of the predicted token, one line per curve.

    On `[BOS] + segment + segment` the second copy starts at token `seg_len + 1`; a dashed
    line marks it, since that is where an induction circuit makes the loss drop.
    """
    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    for name, curve in curves.items():
        values = to_numpy(curve)
        ax.plot(np.arange(1, len(values) + 1), values, marker=".", label=name)
    ax.axvline(seg_len + 1, color="grey", linestyle="--", label="second copy starts")
    ax.set_xlabel("position of the predicted token")
    ax.set_ylabel("loss (nats)")
    ax.set_title(title)
    ax.legend()
    return finish(fig)


def plot_phase_change(
    steps: Sequence[int],
    scores: Mapping[str, Float[Tensor, "snapshot"]],
    losses: Mapping[str, Float[Tensor, "snapshot"]],
    window: tuple[int, int] | None = None,
) -> Figure:
    """Head scores (top) and losses (bottom) against training step, log-scaled from step 1.

    `window` shades the interval between two snapshots where the transition happens.
    """
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(7.5, 5.5))
    for ax, series, ylabel in ((top, scores, "score"), (bottom, losses, "loss (nats) / ICL score")):
        for name, values in series.items():
            ax.plot(steps, to_numpy(values), marker="o", label=name)
        if window is not None:
            ax.axvspan(*window, color="orange", alpha=0.2, label="transition window" if ax is top else None)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    bottom.axhline(0.0, color="grey", linewidth=0.5)
    bottom.set_xscale("symlog", linthresh=max(1, min(s for s in steps if s > 0)))
    bottom.set_xlim(min(steps), max(steps) * 1.1)
    bottom.set_xlabel("training step")
    top.set_title("across training snapshots")
    return finish(fig)


def plot_attribution(labels: Sequence[str], series: Mapping[str, Float[Tensor, "component"]], title: str) -> Figure:
    """Grouped bars, one group per component (embeddings, each head, biases), one bar per series,
    e.g. the mean direct logit attribution on the first and on the repeated copy."""
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(labels) + 2), 3.6))
    width = 0.8 / max(1, len(series))
    positions = np.arange(len(labels))
    for index, (name, values) in enumerate(series.items()):
        ax.bar(positions + (index - (len(series) - 1) / 2) * width, to_numpy(values), width, label=name)
    ax.axhline(0.0, color="grey", linewidth=0.5)
    ax.set_xticks(positions, labels, rotation=60, ha="right")
    ax.set_ylabel("contribution to the logit")
    ax.set_title(title)
    ax.legend()
    return finish(fig)


def plot_circuit(
    matrix: Float[Tensor, "rows cols"], title: str, xlabel: str, ylabel: str,
    labels: Sequence[str] | None = None,
) -> Figure:
    """A QK or OV circuit as a heatmap, coloured around 0; a copying or matching circuit shows
    as a bright diagonal."""
    values = to_numpy(matrix)
    limit = float(np.abs(values).max()) or 1.0
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    image = ax.imshow(values, cmap="RdBu", vmin=-limit, vmax=limit)
    if labels is not None:
        ticks = np.arange(0, len(labels), max(1, len(labels) // 12))
        ax.set_xticks(ticks, [labels[i] for i in ticks], rotation=90)
        ax.set_yticks(ticks, [labels[i] for i in ticks])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.colorbar(image, ax=ax)
    return finish(fig)
