"""Chapter 1's plots: W^T W heatmaps, 2-D feature arrows, nearly-orthogonal counts against the
Johnson-Lindenstrauss-style bound, the n = 2 -> m = 1 phase diagram, and feature dimensionality.

Every function returns its matplotlib Figure, closed to pyplot, so a notebook shows it once (as
the cell's value) and tests can inspect it headless.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
from jaxtyping import Bool, Float, Int
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from torch import Tensor

from mi_course.superposition import PHASES, STICKY_FRACTIONS
from mi_course.viz.figures import finish, to_numpy

PHASE_COLOURS = ("#d9d9d9", "#4c72b0", "#dd8452")


def plot_gram_heatmaps(W: Float[Tensor, "panels d_hidden features"], titles: Sequence[str]) -> Figure:
    """W^T W per panel: the diagonal is how strongly each feature is kept, the off-diagonal how
    much features interfere (blue/red: overlapping or opposed directions)."""
    grams = np.einsum("kmi,kmj->kij", to_numpy(W), to_numpy(W))
    limit = max(1.0, float(np.abs(grams).max()))
    fig, axes = plt.subplots(1, len(grams), figsize=(2.4 * len(grams) + 0.8, 2.6), squeeze=False)
    axes = axes[0]
    for ax, gram, title in zip(axes, grams, titles):
        image = ax.imshow(gram, cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(image, ax=axes[-1], fraction=0.046, pad=0.04)
    return finish(fig)


def plot_feature_arrows(W: Float[Tensor, "panels 2 features"], titles: Sequence[str]) -> Figure:
    """Each feature's column W_i as an arrow in the 2-D hidden space, one panel per model."""
    W = to_numpy(W)
    if W.shape[1] != 2:
        raise ValueError(f"feature arrows need a 2-D hidden space, got d_hidden = {W.shape[1]}")
    fig, axes = plt.subplots(1, len(W), figsize=(2.4 * len(W) + 1.2, 2.7), squeeze=False)
    axes = axes[0]
    colours = [f"C{i % 10}" for i in range(W.shape[2])]
    limit = max(1.2, 1.1 * float(np.linalg.norm(W, axis=1).max()))
    for ax, w, title in zip(axes, W, titles):
        for i, (x, y) in enumerate(w.T):
            ax.annotate("", xy=(x, y), xytext=(0, 0),
                        arrowprops=dict(arrowstyle="-|>", color=colours[i], lw=1.8))
            ax.plot([x], [y], "o", color=colours[i], ms=3, label=f"feature {i}")
        ax.set_xlim(-limit, limit)
        ax.set_ylim(-limit, limit)
        ax.set_aspect("equal")
        ax.axhline(0, color="0.85", lw=0.6, zorder=0)
        ax.axvline(0, color="0.85", lw=0.6, zorder=0)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return finish(fig)


def plot_orthogonal_counts(
    d: Sequence[int], counts: Sequence[int], bound: Float[Tensor, "k"], eps: float
) -> Figure:
    """Measured counts of unit vectors with pairwise |dot| <= eps, beside y = d (an orthonormal
    basis) and the random-vector lower bound exp(c d eps^2), on log-log axes."""
    d_arr = np.asarray(d, dtype=float)
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    ax.plot(d_arr, np.asarray(counts, dtype=float), "o-", label="greedy random search (measured)")
    ax.plot(d_arr, d_arr, "--", color="0.4", label="orthonormal basis: $d$")
    ax.plot(d_arr, to_numpy(bound), ":", color="C3", lw=2, label=r"lower bound $e^{d\varepsilon^2/4}$")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("dimension $d$")
    ax.set_ylabel(f"unit vectors with pairwise |dot| ≤ {eps:g}")
    ax.legend(fontsize=8)
    return finish(fig)


def plot_phase_diagram(
    phase: Int[Tensor, "importance density"],
    density: Float[Tensor, "density"],
    relative_importance: Float[Tensor, "importance"],
) -> Figure:
    """Which of `PHASES` each (density, importance) cell trained into, for n = 2, m = 1."""
    phase = to_numpy(phase).astype(int)
    density, importance = to_numpy(density), to_numpy(relative_importance)
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    cmap = ListedColormap(PHASE_COLOURS)
    ax.pcolormesh(_edges(density), _edges(importance), phase, cmap=cmap, vmin=-0.5, vmax=2.5)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("feature density $1 - S$ (sparser to the right)")
    ax.set_ylabel("importance of feature 2 / feature 1")
    handles = [Patch(color=c, label=name) for c, name in zip(PHASE_COLOURS, PHASES)]
    ax.legend(handles=handles, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=3)
    return finish(fig)


def plot_feature_dimensionality(
    inverse_density: Float[Tensor, "sparsities"],
    dimensionality: Float[Tensor, "sparsities features"],
    represented: Bool[Tensor, "sparsities features"],
    fractions: Sequence[float] = STICKY_FRACTIONS,
) -> Figure:
    """D_i of every represented feature against 1 / (1 - S), with the fractions where features
    stick drawn as horizontal lines."""
    x, D, keep = to_numpy(inverse_density), to_numpy(dimensionality), to_numpy(represented).astype(bool)
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    for f in fractions:
        ax.axhline(f, color="0.8", lw=0.8, zorder=0)
        ax.text(x.max() * 1.08, f, _fraction_label(f), va="center", fontsize=8, color="0.4")
    xs = np.broadcast_to(x[:, None], D.shape)[keep]
    ax.scatter(xs, D[keep], s=10, alpha=0.6)
    ax.plot(x, (D * keep).sum(-1) / np.maximum(keep.sum(-1), 1), color="C1", lw=1,
            label="mean over represented features")
    ax.set_xscale("log")
    ax.set_xlabel("1 / (1 - S)")
    ax.set_ylabel("feature dimensionality $D_i$")
    ax.set_ylim(0, 1.08)
    ax.legend(fontsize=8)
    return finish(fig)


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges for pcolormesh from log-spaced centres (geometric midpoints)."""
    logs = np.log(centres)
    mids = (logs[1:] + logs[:-1]) / 2
    return np.exp(np.concatenate([[2 * logs[0] - mids[0]], mids, [2 * logs[-1] - mids[-1]]]))


def _fraction_label(f: float) -> str:
    return str(Fraction(f).limit_denominator(10))

