"""Plots of patching results: one heatmap per kind of site, layers across, tokens down."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

import matplotlib.pyplot as plt
from jaxtyping import Float
from matplotlib.figure import Figure
from torch import Tensor

from mi_course.viz.figures import finish, to_numpy

TRACE_TITLES = {"hidden": "block output", "mlp": "MLP output", "attn": "attention output"}
TRACE_COLOURS = {"hidden": "Purples", "mlp": "Greens", "attn": "Reds"}


def trace_heatmaps(
    traced: Mapping[str, Float[Tensor, "layer row"]],
    row_labels: Sequence[str],
    title: str,
    value_label: str = "indirect effect on P(object)",
) -> Figure:
    """Causal-tracing heatmaps as in Meng et al. (2022): one panel per kind of state, a row per
    token (or token role) and a column per layer; darker = restoring that state does more."""
    kinds = [kind for kind in TRACE_TITLES if kind in traced]
    fig, axes = plt.subplots(1, len(kinds), figsize=(2.6 * len(kinds), 0.32 * len(row_labels) + 1.6), sharey=True)
    axes = [axes] if len(kinds) == 1 else list(axes)
    top = max(float(to_numpy(traced[kind]).max()) for kind in kinds)
    for ax, kind in zip(axes, kinds):
        values = to_numpy(traced[kind]).T
        image = ax.imshow(values, cmap=TRACE_COLOURS[kind], vmin=0, vmax=max(top, 1e-6), aspect="auto")
        ax.set_title(TRACE_TITLES[kind], fontsize=10)
        ax.set_xlabel("layer", fontsize=9)
        if ax is axes[0]:
            ax.set_ylabel("token", fontsize=9)
        ax.set_xticks(range(values.shape[1]))
        ax.set_yticks(range(len(row_labels)))
        ax.set_yticklabels(row_labels, fontsize=9)
        ax.tick_params(labelsize=9)
        bar = fig.colorbar(image, ax=ax, shrink=0.8)
        bar.ax.tick_params(labelsize=9)
    bar.set_label(value_label, fontsize=9)
    fig.suptitle(title, fontsize=11)
    return finish(fig)


def layer_by_site(
    values: Float[Tensor, "layer site"], site_labels: Sequence[str], title: str, value_label: str
) -> Figure:
    """A signed heatmap of a patching sweep: rows are layers, columns sites (positions or heads)."""
    data = to_numpy(values)
    limit = max(abs(float(data.min())), abs(float(data.max())), 1e-6)
    fig, ax = plt.subplots(figsize=(min(8, 1.5 + 0.45 * data.shape[1]), 0.5 * data.shape[0] + 1.6))
    image = ax.imshow(data, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    ax.set_xticks(range(data.shape[1]))
    ax.set_xticklabels(site_labels, rotation=60, ha="right", fontsize=9)
    ax.set_yticks(range(data.shape[0]))
    ax.set_ylabel("layer", fontsize=9)
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, label=value_label)
    return finish(fig)


def attribution_scatter(estimate: Tensor, actual: Tensor, labels: Sequence[str], title: str) -> Figure:
    """Attribution-patching estimates against true patching effects, one point per site."""
    x, y = to_numpy(actual).ravel(), to_numpy(estimate).ravel()
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    ax.scatter(x, y, s=18)
    for xi, yi, label in zip(x, y, labels):
        ax.annotate(label, (xi, yi), fontsize=9, xytext=(3, 2), textcoords="offset points")
    low, high = min(x.min(), y.min()), max(x.max(), y.max())
    ax.plot([low, high], [low, high], color="grey", linewidth=0.8, linestyle="--")
    ax.set_xlabel("activation patching (metric change)", fontsize=9)
    ax.set_ylabel("attribution patching estimate", fontsize=9)
    ax.set_title(title, fontsize=10)
    return finish(fig)


def sweep_grid(
    values: Mapping[str, Mapping[str, Float[Tensor, "layer head"]]], title: str, value_label: str
) -> Figure:
    """Per-head patching sweeps on one signed colour scale: a row per corruption, a column per
    patched activation (z, k, v, pattern...), each panel layers down and heads across."""
    rows, cols = list(values), list(next(iter(values.values())))
    data = {(r, c): to_numpy(values[r][c]) for r in rows for c in cols}
    limit = max(max(abs(float(v.min())), abs(float(v.max()))) for v in data.values())
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(8, 1.5 * len(rows) + 1.3), squeeze=False,
                             layout="constrained")
    for i, row in enumerate(rows):
        for j, col in enumerate(cols):
            ax = axes[i, j]
            panel = data[(row, col)]
            image = ax.imshow(panel, cmap="RdBu", vmin=-max(limit, 1e-6), vmax=max(limit, 1e-6), aspect="auto")
            ax.set_title(f"{row}: {col}", fontsize=9)
            ax.set_xticks(range(panel.shape[1]))
            ax.set_yticks(range(panel.shape[0]))
            ax.tick_params(labelsize=9)
            ax.set_xlabel("head" if i == len(rows) - 1 else "", fontsize=9)
            ax.set_ylabel("layer" if j == 0 else "", fontsize=9)
            if i < len(rows) - 1:
                ax.set_xticklabels([])
            if j > 0:
                ax.set_yticklabels([])
    bar = fig.colorbar(image, ax=axes, shrink=0.8)
    bar.set_label(value_label, fontsize=9)
    bar.ax.tick_params(labelsize=9)
    fig.suptitle(title, fontsize=11)
    fig.supxlabel("head", fontsize=9)
    fig.supylabel("layer", fontsize=9)
    return finish(fig)


def attribution_panels(
    panels: Mapping[str, tuple[Tensor, Tensor, Sequence[str]]], title: str, n_labels: int = 3
) -> Figure:
    """Attribution-patching estimates against true patching effects, one panel per experiment
    (title -> (estimate, actual, point labels)); the `n_labels` largest true effects are named."""
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 3.3), squeeze=False, layout="constrained")
    for ax, (name, (estimate, actual, labels)) in zip(axes[0], panels.items()):
        x, y = to_numpy(actual).ravel(), to_numpy(estimate).ravel()
        ax.scatter(x, y, s=16)
        low, high = min(x.min(), y.min()), max(x.max(), y.max())
        named: list[int] = []
        for index in np.argsort(-np.abs(x))[:n_labels]:
            # skip a point too close to one already named: the labels would overlap
            if all(np.hypot(x[index] - x[j], y[index] - y[j]) > 0.15 * (high - low) for j in named):
                ax.annotate(labels[index], (x[index], y[index]), fontsize=9, xytext=(3, -10), textcoords="offset points")
                named.append(index)
        ax.plot([low, high], [low, high], color="grey", linewidth=0.8, linestyle="--")
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=9)
    fig.supxlabel("activation patching (metric change)", fontsize=9)
    fig.supylabel("attribution estimate", fontsize=9)
    fig.suptitle(title, fontsize=11)
    return finish(fig)
