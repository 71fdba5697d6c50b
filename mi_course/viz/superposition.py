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
from mi_course.viz.figures import finish, panel_grid, to_numpy, wrap_title

PHASE_COLOURS = ("#d9d9d9", "#4c72b0", "#dd8452")


def plot_gram_heatmaps(W: Float[Tensor, "panels d_hidden features"], titles: Sequence[str]) -> Figure:
    """W^T W per panel: the diagonal is how strongly each feature is kept, the off-diagonal how
    much features interfere (blue/red: overlapping or opposed directions)."""
    grams = np.einsum("kmi,kmj->kij", to_numpy(W), to_numpy(W))
    limit = max(1.0, float(np.abs(grams).max()))
    fig, axes = panel_grid(len(grams), panel_in=1.9, extra_w=0.9, extra_h=1.0)
    ticks = np.arange(grams.shape[-1])
    for ax, gram, title in zip(axes, grams, titles):
        image = ax.imshow(gram, cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(wrap_title(title, 1.9), fontsize=10)
        ax.set_xticks(ticks)
        ax.set_yticks(ticks)
    fig.colorbar(image, ax=list(axes), shrink=0.8, label=r"$W_i \cdot W_j$")
    fig.suptitle(r"$W^\top W$: features kept (diagonal) and sharing directions (off-diagonal)")
    fig.supxlabel("feature j")
    fig.supylabel("feature i")
    return finish(fig)


def plot_feature_arrows(W: Float[Tensor, "panels 2 features"], titles: Sequence[str]) -> Figure:
    """Each feature's column W_i as an arrow in the 2-D hidden space, one panel per model."""
    W = to_numpy(W)
    if W.shape[1] != 2:
        raise ValueError(f"feature arrows need a 2-D hidden space, got d_hidden = {W.shape[1]}")
    fig, axes = panel_grid(len(W), panel_in=1.9, extra_w=1.1, extra_h=1.0)
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
        ax.set_title(wrap_title(title, 1.9), fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right center")
    fig.suptitle("each feature's direction $W_i$ in the 2-D hidden space")
    fig.supxlabel("hidden dimension 1")
    fig.supylabel("hidden dimension 2")
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
    ax.set_title(f"how many nearly orthogonal directions fit in $d$ dimensions (ε = {eps:g})")
    ax.legend()
    return finish(fig)


def plot_phase_diagram(
    phase: Int[Tensor, "importance density"],
    density: Float[Tensor, "density"],
    relative_importance: Float[Tensor, "importance"],
) -> Figure:
    """Which of `PHASES` each (density, importance) cell trained into, for n = 2, m = 1."""
    phase = to_numpy(phase).astype(int)
    density, importance = to_numpy(density), to_numpy(relative_importance)
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    cmap = ListedColormap(PHASE_COLOURS)
    ax.pcolormesh(_edges(density), _edges(importance), phase, cmap=cmap, vmin=-0.5, vmax=2.5)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("feature density $1 - S$ (sparser to the right)")
    ax.set_ylabel("importance of feature 2 / feature 1")
    ax.set_title("phase of the trained model: 2 features in 1 dimension")
    handles = [Patch(color=c, label=name) for c, name in zip(PHASE_COLOURS, PHASES)]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3)
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
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    top = 1.08
    label_at = _spread(np.asarray(fractions, dtype=float) / top, gap=0.055)
    for f, y in zip(fractions, label_at):
        ax.axhline(f, color="0.8", lw=0.8, zorder=0)
        ax.text(1.03, y, _fraction_label(f), transform=ax.transAxes, va="center", color="0.35")
        ax.plot([1.0, 1.025], [f / top, y], transform=ax.transAxes, color="0.7", lw=0.6, clip_on=False)
    xs = np.broadcast_to(x[:, None], D.shape)[keep]
    ax.scatter(xs, D[keep], s=10, alpha=0.6)
    ax.plot(x, (D * keep).sum(-1) / np.maximum(keep.sum(-1), 1), color="C1", lw=1,
            label="mean over represented features")
    ax.set_xscale("log")
    ax.set_xlabel("1 / (1 - S)")
    ax.set_ylabel("feature dimensionality $D_i$")
    ax.set_ylim(0, top)
    ax.set_title("feature dimensionality: 20 features in 5 dimensions")
    ax.legend(loc="upper right")
    return finish(fig)


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges for pcolormesh from log-spaced centres (geometric midpoints)."""
    logs = np.log(centres)
    mids = (logs[1:] + logs[:-1]) / 2
    return np.exp(np.concatenate([[2 * logs[0] - mids[0]], mids, [2 * logs[-1] - mids[-1]]]))


def _spread(positions: np.ndarray, gap: float) -> np.ndarray:
    """`positions` moved apart, as little as possible, until neighbours are at least `gap` apart
    (order kept): label positions that do not overlap."""
    order = np.argsort(positions)
    placed = positions[order].copy()
    for i in range(1, len(placed)):
        placed[i] = max(placed[i], placed[i - 1] + gap)
    shift = max(0.0, placed[-1] - 1.0)
    placed = placed - shift if shift else placed
    for i in range(len(placed) - 2, -1, -1):
        placed[i] = min(placed[i], placed[i + 1] - gap)
    out = np.empty_like(placed)
    out[order] = placed
    return out


def _fraction_label(f: float) -> str:
    return str(Fraction(f).limit_denominator(10))

