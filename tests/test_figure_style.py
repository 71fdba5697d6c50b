"""The course's figure rules: the audit catches each kind of unreadable figure, it is wired into
notebook kernels, and every plot function in mi_course.viz passes it."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from mi_course.viz import attention, style  # noqa: E402
from mi_course.viz import patching as viz_patching  # noqa: E402
from mi_course.viz import superposition as viz_sp  # noqa: E402


@pytest.fixture(autouse=True)
def _course_style():
    with matplotlib.rc_context(style.STYLE):
        yield
    plt.close("all")


def _good_line_plot(**figure) -> Figure:
    fig, ax = plt.subplots(**figure)
    ax.plot([0, 1, 2], [1, 0, 2], label="data")
    ax.set(title="a title", xlabel="x", ylabel="y")
    ax.legend()
    return fig


def test_a_labelled_figure_that_fits_passes():
    assert style.audit_figure(_good_line_plot(figsize=(6, 4))) == []


def test_too_wide_or_too_tall_is_reported():
    problems = style.audit_figure(_good_line_plot(figsize=(17.9, 2.6)))
    assert len(problems) == 1 and "17.9 x 2.6 in" in problems[0]
    assert "in" in style.audit_figure(_good_line_plot(figsize=(6, 12)))[0]


def test_small_text_is_reported():
    fig = _good_line_plot(figsize=(6, 4))
    fig.axes[0].legend(fontsize=6)
    problems = style.audit_figure(fig)
    assert len(problems) == 1 and "smaller than 9 pt" in problems[0] and "'data'" in problems[0]


def test_missing_title_and_axis_labels_are_reported():
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot([0, 1], [0, 1])
    problems = style.audit_figure(fig)
    assert any("no title" in p for p in problems)
    assert any("no x label" in p for p in problems) and any("no y label" in p for p in problems)
    fig.suptitle("a suptitle counts as the title")
    fig.supxlabel("shared x")
    ax.set_ylabel("y")
    assert style.audit_figure(fig) == []


def test_heatmap_with_tick_labels_needs_no_axis_labels_but_a_bare_one_does():
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(torch.rand(3, 3).numpy())
    ax.set_title("heatmap")
    ax.set_xticks(range(3), ["a", "b", "c"])
    ax.set_yticks(range(3), ["a", "b", "c"])
    assert style.audit_figure(fig) == []
    ax.set_xticks([])
    assert [p for p in style.audit_figure(fig) if "no x label" in p]


def test_shared_axis_label_counts_for_its_siblings():
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(5, 4))
    for ax, name in ((top, "top"), (bottom, "bottom")):
        ax.plot([0, 1], [0, 1])
        ax.set(title=name, ylabel="y")
    bottom.set_xlabel("shared x")
    assert style.audit_figure(fig) == []


def test_overlapping_labels_are_reported():
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot([0, 1], [0, 1])
    ax.set(title="t", xlabel="x", ylabel="y")
    ax.text(1.02, 0.4, "2/5", transform=ax.transAxes)
    ax.text(1.02, 0.41, "3/8", transform=ax.transAxes)
    assert any("texts overlap" in p and "2/5" in p for p in style.audit_figure(fig))
    fig, ax = plt.subplots(figsize=(3, 3))
    ax.imshow(torch.rand(60, 60).numpy())
    ax.set_title("t")
    ax.set_xticks(range(60), [f"w{i}" for i in range(60)])
    ax.set_yticks(range(60), [f"w{i}" for i in range(60)])
    assert any("tick labels overlap" in p for p in style.audit_figure(fig))


def test_check_figure_raises_with_every_problem():
    fig, ax = plt.subplots(figsize=(10, 3))
    ax.plot([0, 1], [0, 1])
    with pytest.raises(style.FigureStyleError, match="(?s)10.0 x 3.0 in.*no title"):
        style.check_figure(fig)


def test_audit_is_installed_into_an_ipython_display():
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    assert style.install_audit(shell)
    printer = shell.display_formatter.formatters["text/plain"].lookup_by_type(Figure)
    fig, ax = plt.subplots(figsize=(10, 3))
    ax.plot([0, 1], [0, 1])
    with pytest.raises(style.FigureStyleError):
        printer(fig, None, False)
    shown = []
    printer(_good_line_plot(figsize=(5, 3)), type("P", (), {"text": lambda self, t: shown.append(t)})(), False)
    assert shown and shown[0].startswith("<Figure")


# --- every plot function of the course, on typical inputs -------------------------------------

g = torch.Generator().manual_seed(0)
WORDS = [f"w{i:02d}" for i in range(51)]
LONG_TITLES = ["S = 0", "S = 0.5", "S = 0.8", "S = 0.9", "S = 0.95", "S = 0.99", "S = 0, importance 0.9^i"]

FIGURES = {
    "gram heatmaps": lambda: viz_sp.plot_gram_heatmaps(torch.randn(7, 2, 5, generator=g), LONG_TITLES),
    "feature arrows": lambda: viz_sp.plot_feature_arrows(torch.randn(7, 2, 5, generator=g), LONG_TITLES),
    "orthogonal counts": lambda: viz_sp.plot_orthogonal_counts(
        [2, 10, 100, 1000], [2, 12, 200, 1500], torch.tensor([1.0, 1.0, 1.3, 12.0]), 0.1),
    "phase diagram": lambda: viz_sp.plot_phase_diagram(
        torch.randint(0, 3, (20, 20), generator=g), torch.logspace(0, -2, 20), torch.logspace(-1, 1, 20)),
    "feature dimensionality": lambda: viz_sp.plot_feature_dimensionality(
        torch.logspace(0, 1.3, 16), torch.rand(16, 20, generator=g), torch.rand(16, 20, generator=g) > 0.3),
    "attention, 4 heads, 11 tokens": lambda: attention.plot_attention(
        torch.rand(4, 11, 11, generator=g).tril(), WORDS[:11], [f"L0H{h}" for h in range(4)], title="layer 0"),
    "attention, 4 heads, 51 tokens": lambda: attention.plot_attention(
        torch.rand(4, 51, 51, generator=g).tril(), WORDS, [f"L1H{h}" for h in range(4)], title="layer 1", cols=2),
    "attention, 8 heads, 11 tokens": lambda: attention.plot_attention(
        torch.rand(8, 11, 11, generator=g).tril(), WORDS[:11], cols=4),
    "attention, 1 head": lambda: attention.plot_attention(torch.rand(51, 51, generator=g).tril(), WORDS),
    "head scores": lambda: attention.plot_head_scores(
        torch.rand(2, 4, generator=g), "K-composition: layer-0 head (rows) into layer-1 head (columns)"),
    "per-token loss": lambda: attention.plot_per_token_loss({"model": torch.rand(50, generator=g)}, 25),
    "phase change": lambda: attention.plot_phase_change(
        [0, 10, 100, 1000], {"induction": torch.rand(4, generator=g)}, {"loss": torch.rand(4, generator=g)}, (10, 100)),
    "attribution": lambda: attention.plot_attribution(
        ["embed", "pos"] + [f"L{l}H{h}" for l in range(2) for h in range(4)] + ["biases"],
        {"first": torch.randn(11, generator=g), "repeat": torch.randn(11, generator=g)}, "direct logit attribution"),
    "circuit": lambda: attention.plot_circuit(
        torch.randn(298, 298, generator=g), "OV circuit", "output logit", "attended word", [f"w{i}" for i in range(298)]),
    "causal tracing": lambda: viz_patching.trace_heatmaps(
        {kind: torch.rand(4, 8, generator=g) for kind in ("hidden", "mlp", "attn")},
        ["<bos>", "the", "town", "where", "zoe*", "glen*", "lives", "is"], "causal tracing"),
    "patching by site": lambda: viz_patching.layer_by_site(
        torch.randn(4, 8, generator=g), [f"token {i}" for i in range(8)], "denoising", "normalised metric"),
    "sweep grid": lambda: viz_patching.sweep_grid(
        {c: {a: torch.randn(2, 4, generator=g) for a in ("z", "k", "v", "pattern")} for c in ("value", "first copy")},
        "denoising each head", "normalised metric"),
    "attribution panels": lambda: viz_patching.attribution_panels(
        {f"experiment {i}": (torch.randn(4, 4, generator=g), torch.randn(4, 4, generator=g),
                             [f"{l}.{h}" for l in range(4) for h in range(4)]) for i in range(3)},
        "attribution vs patching"),
}


@pytest.mark.parametrize("name", FIGURES)
def test_every_course_figure_passes_the_audit(name):
    assert style.audit_figure(FIGURES[name]()) == []
