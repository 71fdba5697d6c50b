"""What every plot module shares: tensors to numpy, and handing a finished figure back."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from torch import Tensor


def to_numpy(x: Tensor | np.ndarray | Sequence[float]) -> np.ndarray:
    return x.detach().float().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x, dtype=float)


def finish(fig: Figure) -> Figure:
    """Lay out and detach from pyplot: the notebook renders the returned figure once."""
    fig.tight_layout()
    plt.close(fig)
    return fig
