"""Chapter 2's plots build headless, fit a notebook column (width <= 8 in) and label their axes."""

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from mi_course.viz import sae as viz

FIGURES = {
    "recovery": lambda: viz.plot_recovery(torch.tensor([0.01, 0.1, 1.0]), {"MMCS": torch.rand(3)}, "t"),
    "frontier": lambda: viz.plot_frontier({"L1": ([1.0, 2.0, 4.0], [0.5, 0.8, 0.9], ["a", "b", "c"])}, "t"),
    "grid": lambda: viz.plot_on_grid(torch.randn(7, 25), [f"u{i}" for i in range(7)], "t"),
    "detection": lambda: viz.plot_detection({"SAE": torch.rand(6), "neurons": torch.rand(6)}, list("abcdef"), "t"),
    "moves": lambda: viz.plot_move_effects({"remove": torch.randn(4), "random": torch.randn(4)}, "t"),
}


@pytest.mark.parametrize("name", FIGURES)
def test_figure_fits_and_is_labelled(name, tmp_path):
    fig = FIGURES[name]()
    assert fig.get_figwidth() <= 8
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.axison]
    assert axes and all(ax.get_title() or fig._suptitle for ax in axes)
    if name != "grid":
        assert axes[0].get_xlabel() or axes[0].get_xticklabels(), "x axis labelled"
        assert axes[0].get_ylabel(), "y axis labelled"
    fig.savefig(tmp_path / f"{name}.png", dpi=100)
