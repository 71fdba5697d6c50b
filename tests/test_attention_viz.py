"""Chapter 3's plots, headless: each returns a figure with what it promises, and the attention
explorer works as a widget when asked and falls back to a static grid without ipywidgets."""

import sys

import matplotlib
import pytest
import torch
from matplotlib.figure import Figure

from mi_course.viz import attention as viz

matplotlib.use("Agg")


@pytest.fixture
def patterns() -> torch.Tensor:
    scores = torch.randn(2, 3, 5, 5).masked_fill(torch.ones(5, 5, dtype=torch.bool).triu(1), float("-inf"))
    return scores.softmax(-1)


LABELS = ["<bos>", "cat", "dog", "cat", "dog"]


def test_plot_attention_labels_every_position(patterns):
    fig = viz.plot_attention(patterns[0], LABELS, ["a", "b", "c"])
    heatmaps = [ax for ax in fig.axes if ax.images and ax.get_title()]
    assert [ax.get_title() for ax in heatmaps] == ["a", "b", "c"]
    assert [t.get_text() for t in heatmaps[0].get_xticklabels()] == LABELS


def test_plot_attention_rejects_mismatched_labels(patterns):
    with pytest.raises(ValueError, match="one label per position"):
        viz.plot_attention(patterns[0], LABELS[:3])


def test_explorer_without_widgets_is_a_static_grid_of_every_head(patterns):
    fig = viz.attention_explorer(patterns, LABELS, use_widgets=False)
    assert isinstance(fig, Figure)
    assert sorted(ax.get_title() for ax in fig.axes if ax.images) == [f"L{l}H{h}" for l in range(2) for h in range(3)]


def test_explorer_falls_back_when_ipywidgets_is_missing(patterns, monkeypatch):
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # makes `import ipywidgets` fail
    assert not viz.widgets_available()
    assert isinstance(viz.attention_explorer(patterns, LABELS, use_widgets=True), Figure)
    assert isinstance(viz.attention_explorer(patterns, LABELS), Figure)


def test_explorer_widget_redraws_the_chosen_head(patterns):
    import ipywidgets

    box = viz.attention_explorer(patterns, LABELS, use_widgets=True)
    assert isinstance(box, ipywidgets.VBox)
    layer, head = box.children[0].children
    assert box.figure.axes[0].get_title() == "L0H0"
    layer.value, head.value = 1, 2
    assert box.figure.axes[0].get_title() == "L1H2"
    shown = box.figure.axes[0].images[0].get_array()
    assert torch.allclose(torch.as_tensor(shown.data), patterns[1, 2])


def test_head_scores_and_line_plots():
    fig = viz.plot_head_scores(torch.tensor([[0.1, -0.9], [0.5, 0.2]]), "scores", centre=True)
    assert [t.get_text() for t in fig.axes[0].texts] == ["0.10", "-0.90", "0.50", "0.20"]
    fig = viz.plot_per_token_loss({"model": torch.rand(8)}, seg_len=4)
    assert len(fig.axes[0].lines) == 2  # the curve and the marker of the second copy
    fig = viz.plot_phase_change([0, 10, 100], {"induction": torch.tensor([0.0, 0.1, 0.9])},
                                {"repeat loss": torch.tensor([4.0, 3.0, 0.5])}, window=(10, 100))
    assert len(fig.axes) == 2 and fig.axes[1].get_xscale() == "symlog"


def test_attribution_bars_and_circuit_heatmap():
    fig = viz.plot_attribution(["embed", "L0H0", "L1H1"], {"first": torch.tensor([0.1, 0.2, 0.0]),
                                                           "repeat": torch.tensor([0.0, 0.1, 5.0])}, "dla")
    assert len(fig.axes[0].patches) == 6
    fig = viz.plot_circuit(torch.eye(30), "ov", "out", "in", labels=[f"t{i}" for i in range(30)])
    assert fig.axes[0].images[0].get_array().shape == (30, 30)
