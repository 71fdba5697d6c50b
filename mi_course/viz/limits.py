"""Plots of Chapter 7 (the limits of interpretability): absorption across SAE widths and L1
coefficients, faithfulness by ablation, and the induction circuit's copying against the
mechanism's prediction."""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from jaxtyping import Float, Int
from matplotlib.figure import Figure
from torch import Tensor

from mi_course.viz.figures import finish, to_numpy


def _grouped_bars(ax, groups: Sequence[str], series: Mapping[str, Sequence[float] | Tensor]) -> None:
    positions = np.arange(len(groups))
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series.items()):
        ax.bar(positions + (i - (len(series) - 1) / 2) * width, to_numpy(values), width, label=label)
    ax.set_xticks(positions, groups)


def plot_absorption(
    settings: Sequence[str], recall_alone: Float[Tensor, "settings"], recall_with_child: Float[Tensor, "settings"]
) -> Figure:
    """The parent latent's recall where the parent is alone and where a child is active, per SAE."""
    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    _grouped_bars(ax, settings, {"parent alone": recall_alone, "parent with a child (mean over children)": recall_with_child})
    ax.set_ylim(0, 1.3)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.set_xlabel("SAE (width, L1 coefficient)")
    ax.set_ylabel("parent latent's recall")
    ax.set_title("Feature absorption: the parent latent goes silent where a child is active")
    ax.legend(loc="upper center", ncol=2)
    return finish(fig)


def plot_faithfulness(scores: Mapping[str, Sequence[float] | Tensor], ablations: Sequence[str], title: str) -> Figure:
    """Faithfulness of each circuit (one colour each) under each kind of ablation."""
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    _grouped_bars(ax, ablations, scores)
    ax.axhline(0, color="0.3", lw=0.8)
    ax.set_ylim(-0.1, 1.4)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.set_xlabel("what replaces an ablated head")
    ax.set_ylabel("faithfulness")
    ax.set_title(title)
    ax.legend(loc="upper center", ncol=2)
    return finish(fig)


def plot_copy_map(
    distances: Int[Tensor, "cells"], queries: Int[Tensor, "cells"], loss: Float[Tensor, "cells"], reach: int, title: str
) -> Figure:
    """Loss on the copied token by (query position, distance back), with the line past which the
    mechanism predicts no copying (key q - d + 1 beyond the previous-token head's reach)."""
    ds, qs = sorted(set(distances.tolist())), sorted(set(queries.tolist()))
    grid = np.full((len(ds), len(qs)), np.nan)
    grid[[ds.index(d) for d in distances.tolist()], [qs.index(q) for q in queries.tolist()]] = to_numpy(loss)
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    image = ax.imshow(grid, aspect="auto", origin="lower", cmap="viridis",
                      extent=(qs[0] - 0.5, qs[-1] + 0.5, ds[0] - 1.5, ds[-1] + 1.5))
    line_d = np.array(ds, dtype=float)
    ax.plot(reach - 0.5 + line_d, line_d, color="red", lw=2, ls="--", label="predicted: no copying to the right")
    ax.set_xlim(qs[0] - 0.5, qs[-1] + 0.5)
    ax.set_xlabel("query position q")
    ax.set_ylabel("distance d to the earlier copy")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=9)
    fig.colorbar(image, ax=ax, label="loss on the copied token (nats)")
    return finish(fig)
