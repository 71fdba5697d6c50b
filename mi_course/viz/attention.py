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

from mi_course.viz.figures import finish, panel_grid, thinned_ticks, to_numpy, wrap_title
from mi_course.viz.style import MAX_WIDTH_IN


# --- attention patterns ----------------------------------------------------------------------


def plot_attention(
    patterns: Float[Tensor, "head query key"],
    labels: Sequence[str],
    head_names: Sequence[str] | None = None,
    title: str | None = None,
    cols: int = 4,
) -> Figure:
    """One heatmap per head, rows = queries, columns = keys, both labelled with their tokens.

    A previous-token head is a line just below the diagonal; an induction head on repeated
    tokens is a line `seg_len - 1` below it, in the second copy only. The grid fits a notebook
    column; with many tokens only every k-th is labelled, so that the labels stay readable.
    """
    patterns = to_numpy(patterns)
    if patterns.ndim == 2:
        patterns = patterns[None]
    n_heads, n_query, n_key = patterns.shape
    if len(labels) != n_key or n_query != n_key:
        raise ValueError(f"need a square pattern and one label per position; got {patterns.shape[1:]} "
                         f"and {len(labels)} labels")
    names = list(head_names) if head_names is not None else [f"head {h}" for h in range(n_heads)]
    longest = max(len(str(label)) for label in labels)
    # room for the first column's token labels (about 0.075 in per character) and the colour bar
    fig, axes = panel_grid(n_heads, max_cols=cols, panel_in=4.0, extra_w=1.4 + 0.075 * longest,
                           extra_h=0.9 + 0.075 * longest)
    side_px = fig.get_size_inches()[1] / math.ceil(n_heads / min(cols, n_heads)) * fig.dpi * 0.7
    n_cols = min(cols, n_heads)
    for index, ax in enumerate(axes):
        image = ax.imshow(patterns[index], cmap="Blues", vmin=0.0, vmax=1.0)
        thinned_ticks(ax, labels, "x", side_px, rotation=90)
        thinned_ticks(ax, labels, "y", side_px)
        if index % n_cols:
            ax.tick_params(labelleft=False)
        if index < n_heads - n_cols:
            ax.tick_params(labelbottom=False)
        ax.set_title(names[index])
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="attention")
    fig.supxlabel("key (attended to)")
    fig.supylabel("query (attending)")
    fig.suptitle(title or "attention patterns")
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
    fig, ax = plt.subplots(figsize=(min(MAX_WIDTH_IN, 1.1 * n_heads + 2.4), 0.8 * n_layers + 1.6))
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
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title(wrap_title(title, 1.1 * n_heads + 1.0))
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
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(8.0, 5.5))
    for ax, series, ylabel in ((top, scores, "score"), (bottom, losses, "loss (nats) / ICL score")):
        for name, values in series.items():
            ax.plot(steps, to_numpy(values), marker="o", label=name)
        if window is not None:
            ax.axvspan(*window, color="orange", alpha=0.2, label="transition window" if ax is top else None)
        ax.set_ylabel(ylabel)
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
    bottom.axhline(0.0, color="grey", linewidth=0.5)
    bottom.set_xscale("symlog", linthresh=max(1, min(s for s in steps if s > 0)))
    bottom.set_xlim(min(steps), max(steps) * 1.1)
    bottom.set_xlabel("training step")
    top.set_title("head scores across training snapshots")
    bottom.set_title("losses and in-context-learning score")
    return finish(fig)


def plot_attribution(labels: Sequence[str], series: Mapping[str, Float[Tensor, "component"]], title: str) -> Figure:
    """Grouped bars, one group per component (embeddings, each head, biases), one bar per series,
    e.g. the mean direct logit attribution on the first and on the repeated copy."""
    fig, ax = plt.subplots(figsize=(min(MAX_WIDTH_IN, max(6.0, 0.55 * len(labels) + 2)), 3.8))
    width = 0.8 / max(1, len(series))
    positions = np.arange(len(labels))
    for index, (name, values) in enumerate(series.items()):
        ax.bar(positions + (index - (len(series) - 1) / 2) * width, to_numpy(values), width, label=name)
    ax.axhline(0.0, color="grey", linewidth=0.5)
    ax.set_xticks(positions, labels, rotation=60, ha="right")
    ax.set_xlabel("component of the residual stream")
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
        thinned_ticks(ax, labels, "x", 300, rotation=90)   # the heatmap is about 300 px square
        thinned_ticks(ax, labels, "y", 300)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.colorbar(image, ax=ax)
    return finish(fig)
