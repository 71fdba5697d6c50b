"""Chapter 6's plots: per-head scores side by side, and one circuit's faithfulness under several
ablations. Single layer x head grids come from `viz.attention.plot_head_scores`."""

from __future__ import annotations

from typing import Mapping

import matplotlib.pyplot as plt
import numpy as np
from jaxtyping import Float
from matplotlib.figure import Figure
from torch import Tensor

from mi_course.viz.figures import finish, to_numpy
from mi_course.viz.style import MAX_WIDTH_IN


def plot_head_panels(panels: Mapping[str, Float[Tensor, "layer head"]], title: str, label: str = "score") -> Figure:
    """Several layer x head grids on one colour scale (0 to the largest value), one per score,
    e.g. attention from END to IO, S1 and S2: a head's role is read across the panels."""
    values = {name: to_numpy(scores) for name, scores in panels.items()}
    top = max(float(v.max()) for v in values.values()) or 1.0
    n_layers, n_heads = next(iter(values.values())).shape
    fig, axes = plt.subplots(1, len(values), figsize=(MAX_WIDTH_IN, 0.45 * n_layers + 2.0), layout="constrained",
                             squeeze=False)
    for ax, (name, grid) in zip(axes[0], values.items()):
        image = ax.imshow(grid, cmap="viridis", vmin=0, vmax=top)
        ax.set_xticks(range(0, n_heads, 2), [f"H{h}" for h in range(0, n_heads, 2)])
        ax.set_yticks(range(n_layers), [f"L{layer}" for layer in range(n_layers)])
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_title(name)
    fig.colorbar(image, ax=axes[0].tolist(), label=label, shrink=0.8)
    fig.suptitle(title)
    return finish(fig)


def plot_faithfulness(values: Mapping[str, float], title: str) -> Figure:
    """One bar per ablation method: the circuit's faithfulness (1 = the whole model's logit
    difference, 0 = the fully ablated model's), with the two reference lines."""
    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    names = list(values)
    ax.bar(np.arange(len(names)), [values[name] for name in names], color="tab:blue")
    ax.axhline(1.0, color="black", linestyle="--", linewidth=1, label="whole model")
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_xticks(np.arange(len(names)), names)
    ax.set_xlabel("how heads outside the circuit are ablated")
    ax.set_ylabel("faithfulness")
    ax.set_title(title)
    ax.legend(loc="upper left")
    return finish(fig)


def plot_heads_by_position(
    scores: Float[Tensor, "pos head"], words: list[str], title: str, label: str = "score"
) -> Figure:
    """One layer's heads (columns) at every position (rows, labelled by the prompt's words),
    coloured around 0: where in the prompt a head's output matters."""
    values = to_numpy(scores)
    limit = float(np.abs(values).max()) or 1.0
    n_pos, n_heads = values.shape
    fig, ax = plt.subplots(figsize=(5.6, min(7.0, 0.28 * n_pos + 1.6)))
    image = ax.imshow(values, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    ax.set_xticks(range(n_heads), [f"H{h}" for h in range(n_heads)])
    ax.set_yticks(range(n_pos), [f"{p} {w}" for p, w in enumerate(words)])
    ax.set_xlabel("head")
    ax.set_ylabel("position (first prompt's word)")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label=label)
    return finish(fig)
