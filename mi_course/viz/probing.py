"""Plots of Chapter 4: probe scores by depth against baselines and bounds, selectivity, and the
effect of interventions on the probe's directions."""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from mi_course.viz.figures import finish, to_numpy

FONT = 10


def _depth_axis(ax: Axes, n_depths: int) -> None:
    ax.set_xticks(range(n_depths), ["emb."] + [str(d) for d in range(1, n_depths)])
    ax.set_xlabel("depth (blocks read; 0 = embeddings)", fontsize=FONT)


def _lines(ax: Axes, series: Mapping[str, Tensor | Sequence[float]], x: Sequence[float] | None = None) -> None:
    for name, values in series.items():
        values = to_numpy(values)
        ax.plot(range(len(values)) if x is None else x, values, marker="o", label=name)


def plot_by_depth(
    series: Mapping[str, Tensor | Sequence[float]],
    title: str,
    ylabel: str,
    bound: float | None = None,
    bound_label: str = "",
) -> Figure:
    """One line per probe (trained model, controls) across depths, with an optional bound line."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    _lines(ax, series)
    if bound is not None:
        ax.axhline(bound, color="grey", linestyle="--", label=bound_label)
    _depth_axis(ax, len(to_numpy(next(iter(series.values())))))
    ax.set_ylabel(ylabel, fontsize=FONT)
    ax.set_title(title, fontsize=FONT + 1)
    ax.legend(fontsize=FONT - 1)
    return finish(fig)


def plot_bounds(
    probe_loss: Mapping[str, Tensor], model_loss: Tensor, bayes_loss: Tensor, entropy: float = 0.0
) -> Figure:
    """Left: the probes' test cross-entropy by depth against H(cell | history). Right: the model's
    next-move loss at each position against the Bayes limit at that position."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.4))
    _lines(left, probe_loss)
    left.axhline(entropy, color="grey", linestyle="--", label="H(cell | history)")
    _depth_axis(left, len(to_numpy(next(iter(probe_loss.values())))))
    left.set_ylabel("cross-entropy (nats)", fontsize=FONT)
    left.set_title("cell probes: test loss", fontsize=FONT + 1)
    left.legend(fontsize=FONT - 1)
    positions = np.arange(1, len(to_numpy(model_loss)) + 1)
    right.plot(positions, to_numpy(model_loss), label="model")
    right.plot(positions, to_numpy(bayes_loss), linestyle="--", color="grey", label="Bayes limit E[ln #legal]")
    right.set_xlabel("moves read so far", fontsize=FONT)
    right.set_ylabel("next-move loss (nats)", fontsize=FONT)
    right.set_title("model: loss per position", fontsize=FONT + 1)
    right.legend(fontsize=FONT - 1)
    return finish(fig)


def plot_selectivity(task: Mapping[str, Tensor], control: Mapping[str, Tensor]) -> Figure:
    """Left: task accuracy (solid) and control-task accuracy (dashed) by depth for each probe kind.
    Right: selectivity, their difference (Hewitt & Liang 2019)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.4))
    for index, name in enumerate(task):
        colour = f"C{index}"
        left.plot(to_numpy(task[name]), marker="o", color=colour, label=f"{name}: task")
        left.plot(to_numpy(control[name]), marker="s", linestyle="--", color=colour, label=f"{name}: control")
        right.plot(to_numpy(task[name]) - to_numpy(control[name]), marker="o", color=colour, label=name)
    n_depths = len(to_numpy(next(iter(task.values()))))
    for ax, ylabel, title in ((left, "accuracy", "task vs control task"), (right, "task − control", "selectivity")):
        _depth_axis(ax, n_depths)
        ax.set_ylabel(ylabel, fontsize=FONT)
        ax.set_title(title, fontsize=FONT + 1)
        ax.legend(fontsize=FONT - 1)
    right.axhline(0, color="grey", linewidth=0.8)
    return finish(fig)


def plot_ablation(kl: Mapping[str, float], random_kl: Mapping[str, Tensor], title: str) -> Figure:
    """KL of the next-move distribution after mean-ablating each subspace (bars), with the random
    subspaces of matching size as dots, one per draw; log scale."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    names = list(kl) + list(random_kl)
    ax.bar(range(len(kl)), [max(v, 1e-7) for v in kl.values()], color="C0")
    for offset, draws in enumerate(random_kl.values(), start=len(kl)):
        values = np.clip(to_numpy(draws), 1e-7, None)
        ax.scatter(np.full(len(values), offset), values, color="C1", zorder=3)
    ax.set_xticks(range(len(names)), names, fontsize=FONT - 1)
    ax.set_yscale("log")
    ax.set_xlabel("mean-ablated subspace (dimensions)", fontsize=FONT)
    ax.set_ylabel("KL(clean ‖ ablated), nats", fontsize=FONT)
    ax.set_title(title, fontsize=FONT + 1)
    return finish(fig)


def plot_steering(success: Mapping[str, Tensor | Sequence[float]], depths: Sequence[int], chance: float) -> Figure:
    """How often the model's predicted legal moves become the target cell's after an edit at each
    depth, for the probe's subspace and the controls."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    _lines(ax, success, x=list(depths))
    ax.axhline(chance, color="grey", linestyle="--", label="no edit")
    ax.set_xticks(list(depths))
    ax.set_xlabel("depth of the edit (blocks read)", fontsize=FONT)
    ax.set_ylabel("predicted moves = target's legal moves", fontsize=FONT)
    ax.set_ylim(-0.03, 1.03)
    ax.set_title("moving the model's belief from cell A to cell B", fontsize=FONT + 1)
    ax.legend(fontsize=FONT - 1)
    return finish(fig)
