"""What every plot module shares: tensors to numpy, grids that fit a notebook column, thinned
tick labels, and handing a finished figure back. Sizes and fonts follow `mi_course.viz.style`."""

from __future__ import annotations

import math
import textwrap
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from mi_course.viz.style import MAX_HEIGHT_IN, MAX_WIDTH_IN

TICK_SPACING_PX = 14
"""Room one 9-pt tick label needs along its axis, in pixels at 100 dpi."""


def to_numpy(x: Tensor | np.ndarray | Sequence[float]) -> np.ndarray:
    return x.detach().float().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x, dtype=float)


def finish(fig: Figure) -> Figure:
    """Lay out (unless the figure lays itself out) and detach from pyplot: the notebook renders
    the returned figure once."""
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    plt.close(fig)
    return fig


def panel_grid(
    n_panels: int, max_cols: int = 4, panel_in: float = 2.0, extra_w: float = 0.0, extra_h: float = 0.6,
) -> tuple[Figure, np.ndarray]:
    """A constrained-layout grid of `n_panels` square panels, at most `max_cols` per row, sized
    to fit `MAX_WIDTH_IN` x `MAX_HEIGHT_IN` with `extra_w` / `extra_h` inches left for a colour
    bar, legend or titles. Unused panels are hidden; the visible axes come back flat."""
    cols = min(max_cols, n_panels)
    rows = math.ceil(n_panels / cols)
    side = min(panel_in, (MAX_WIDTH_IN - extra_w) / cols, (MAX_HEIGHT_IN - extra_h) / rows)
    fig, axes = plt.subplots(rows, cols, figsize=(side * cols + extra_w, side * rows + extra_h),
                             squeeze=False, layout="constrained")
    for ax in axes.flat[n_panels:]:
        ax.set_visible(False)
    return fig, axes.flat[:n_panels]


def thinned_ticks(ax: Axes, labels: Sequence[str], axis: str, length_px: float, rotation: float = 0) -> None:
    """Label every k-th position on `axis`, k chosen so that labels `TICK_SPACING_PX` apart fit
    along `length_px` pixels."""
    step = max(1, math.ceil(len(labels) * TICK_SPACING_PX / max(length_px, 1.0)))
    ticks = np.arange(0, len(labels), step)
    names = [labels[i] for i in ticks]
    if axis == "x":
        ax.set_xticks(ticks, names, rotation=rotation)
    else:
        ax.set_yticks(ticks, names, rotation=rotation)


def wrap_title(title: str, width_in: float) -> str:
    """`title` broken into lines that fit `width_in` inches at the style's title size."""
    return "\n".join(textwrap.wrap(title, max(8, int(width_in * 12)))) if title else title
