"""Chapter 2's plots: recovery against L1, the L0 / explained-variance frontier, units drawn on
the 5x5 grid, detection scores of SAE latents against neurons and random directions, and the
effect of removing or steering a latent on the next-move probabilities.

Every function returns its matplotlib Figure, closed to pyplot.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
from matplotlib.backends.backend_agg import FigureCanvasAgg
import numpy as np
from jaxtyping import Float
from matplotlib.figure import Figure
from torch import Tensor

from mi_course.data.grid_walks import MOVES, SIZE
from mi_course.viz.figures import finish, to_numpy


def plot_recovery(
    l1: Float[Tensor, "runs"], curves: Mapping[str, Float[Tensor, "runs"]], title: str
) -> Figure:
    """Recovery scores (MMCS, Hungarian) and explained variance against the L1 coefficient."""
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    for label, values in curves.items():
        ax.plot(to_numpy(l1), to_numpy(values), "o-", label=label)
    ax.set_xscale("log")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("L1 coefficient")
    ax.set_ylabel("score")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=9)
    ax.grid(alpha=0.3)
    return finish(fig)


def plot_frontier(runs: Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[str]]], title: str) -> Figure:
    """L0 against explained variance, one line per family of SAEs (label -> (l0, ev, point names)).
    Up and to the left is better: more variance explained with fewer active latents."""
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    notes = []
    for label, (l0, ev, names) in runs.items():
        l0, ev = to_numpy(l0), to_numpy(ev)
        ax.plot(l0, ev, "o-", label=label)
        notes += [ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, -10), fontsize=9)
                  for x, y, name in zip(l0, ev, names)]
    ax.set_xscale("log")
    ax.set_xlabel("L0 (mean active latents per input)")
    ax.set_ylabel("explained variance")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=9, loc="lower right")
    ax.grid(alpha=0.3)
    fig = finish(fig)
    _drop_crowded(fig, notes)
    return fig


def _drop_crowded(fig: Figure, notes: list) -> None:
    """Remove point labels that would sit on an earlier one: crowded points keep the first label."""
    if not hasattr(fig.canvas, "get_renderer"):
        FigureCanvasAgg(fig)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    kept = []
    for note in notes:
        box = note.get_window_extent(renderer)
        if any(box.overlaps(other) for other in kept):
            note.remove()
        else:
            kept.append(box)


def plot_on_grid(maps: Float[Tensor, "units cells"], titles: Sequence[str], suptitle: str) -> Figure:
    """Each unit's mean activation per cell, drawn as the 5x5 grid (x to the right, y up)."""
    maps = to_numpy(maps).reshape(len(maps), SIZE, SIZE)
    columns = min(len(maps), 6)
    rows = -(-len(maps) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.25 * columns + 0.3, 1.65 * rows + 0.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, grid, title in zip(axes.flat, maps, titles):
        ax.axis("on")
        limit = max(abs(grid).max(), 1e-6)
        ax.imshow(grid, origin="lower", cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(suptitle, fontsize=10)
    fig.supxlabel("x (column, left to right)", fontsize=9)
    fig.supylabel("y (row, bottom to top)", fontsize=9)
    return finish(fig)


def plot_detection(
    scores: Mapping[str, Float[Tensor, "variables"]], variable_names: Sequence[str], title: str
) -> Figure:
    """For each known variable, the best detector's F1 in each family of units."""
    fig, ax = plt.subplots(figsize=(8, 3.4))
    positions = np.arange(len(variable_names))
    width = 0.8 / len(scores)
    for i, (label, values) in enumerate(scores.items()):
        ax.bar(positions + (i - (len(scores) - 1) / 2) * width, to_numpy(values), width, label=label)
    ax.set_xticks(positions)
    ax.set_xticklabels(variable_names, rotation=20, fontsize=9)
    ax.set_xlabel("known variable")
    ax.set_ylabel("best F1 as a detector")
    ax.set_ylim(0, 1.35)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=9, ncol=2, loc="upper center")
    return finish(fig)


def plot_move_effects(effects: Mapping[str, Float[Tensor, "move"]], title: str) -> Figure:
    """Change in log p(move) for each intervention, one group of bars per next-move token."""
    fig, ax = plt.subplots(figsize=(6.0, 3.2))
    positions = np.arange(len(MOVES))
    width = 0.8 / len(effects)
    for i, (label, values) in enumerate(effects.items()):
        ax.bar(positions + (i - (len(effects) - 1) / 2) * width, to_numpy(values), width, label=label)
    ax.axhline(0, color="0.3", lw=0.8)
    ax.set_xticks(positions)
    ax.set_xticklabels([f"log p({move})" for move in MOVES])
    ax.set_xlabel("next-move token")
    ax.set_ylabel("change (nats)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=9)
    return finish(fig)
