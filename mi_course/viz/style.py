"""One figure style for the course, and an audit that holds every figure a notebook shows to it.

The style (`STYLE`, applied by `mi_course.setup()`) sizes text for a figure shown at 100% in a
JupyterLab notebook column. The audit (`audit_figure`) checks what a reader needs: the figure
fits the column (at most `MAX_WIDTH_IN` x `MAX_HEIGHT_IN` inches at `DPI`, so it is never shrunk),
no text is smaller than `MIN_FONT_PT`, tick labels and annotations do not overlap, and every
axes that shows data has a title (or the figure a suptitle) and says what its axes are.
Under tests `setup()` installs it into the kernel (`install_audit`), so a notebook cell that
shows a figure breaking these rules fails with the list of problems: that covers every chapter,
including ones not written yet.
"""

from __future__ import annotations

from typing import Any

import matplotlib as mpl
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

DPI = 100
MAX_WIDTH_IN = 8.0
"""A JupyterLab notebook column at 100% zoom shows about 800-900 px of output."""
MAX_HEIGHT_IN = 7.5
"""A figure taller than this does not fit on a laptop screen at once."""
MIN_FONT_PT = 9.0

STYLE: dict[str, Any] = {
    "figure.figsize": (6.4, 4.0),
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "legend.title_fontsize": 9,
    "figure.titlesize": 12,
    "axes.titlepad": 5,
}


class FigureStyleError(AssertionError):
    """A figure that breaks the course's figure rules (see `audit_figure`)."""


def apply_style() -> None:
    """Make `STYLE` the matplotlib default for this process."""
    mpl.rcParams.update(STYLE)


def _has_data(ax: Axes) -> bool:
    return bool(ax.lines or ax.collections or ax.images or ax.patches)


def _is_colorbar(ax: Axes) -> bool:
    return getattr(ax, "_colorbar", None) is not None


def _tick_labels(ax: Axes, axis: str) -> list[Text]:
    ticks = ax.get_xticklabels() if axis == "x" else ax.get_yticklabels()
    return [t for t in ticks if t.get_visible() and t.get_text()]


def _named(ax: Axes, axis: str, fig: Figure) -> bool:
    """The axis says what it shows: its own label, a shared sibling's, the figure's sup-label,
    or (for an image) tick labels naming the rows/columns."""
    label = ax.get_xlabel() if axis == "x" else ax.get_ylabel()
    if label:
        return True
    shared = ax.get_shared_x_axes() if axis == "x" else ax.get_shared_y_axes()
    if any((s.get_xlabel() if axis == "x" else s.get_ylabel()) for s in shared.get_siblings(ax)):
        return True
    sup = getattr(fig, "_supxlabel" if axis == "x" else "_supylabel", None)
    if sup is not None and sup.get_text():
        return True
    return bool(ax.images) and bool(_tick_labels(ax, axis))


def _overlaps(texts: list[Text], renderer: Any) -> list[tuple[str, str]]:
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
    return [(a, b) for i, (a, box_a) in enumerate(boxes) for b, box_b in boxes[i + 1:]
            if box_a.overlaps(box_b) and box_a.intersection(box_a, box_b).width > 1
            and box_a.intersection(box_a, box_b).height > 1]


def audit_figure(fig: Figure) -> list[str]:
    """What is wrong with `fig` by the course's rules, one sentence per problem (empty: fine)."""
    problems = []
    width, height = fig.get_size_inches()
    if width > MAX_WIDTH_IN + 1e-6 or height > MAX_HEIGHT_IN + 1e-6:
        problems.append(f"figure is {width:.1f} x {height:.1f} in; at most {MAX_WIDTH_IN:g} x "
                        f"{MAX_HEIGHT_IN:g} in fits a notebook column at 100% (figsize=(w, h))")
    if not hasattr(fig.canvas, "get_renderer"):
        FigureCanvasAgg(fig)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    small = {t.get_text() for t in fig.findobj(Text)
             if t.get_visible() and t.get_text().strip() and t.get_fontsize() < MIN_FONT_PT - 1e-6}
    if small:
        shown = ", ".join(repr(s) for s in sorted(small)[:4]) + (" ..." if len(small) > 4 else "")
        problems.append(f"{len(small)} text(s) smaller than {MIN_FONT_PT:g} pt: {shown}")
    suptitle = fig._suptitle is not None and bool(fig._suptitle.get_text())
    for index, ax in enumerate(fig.axes):
        if not ax.get_visible() or not ax.axison or _is_colorbar(ax):
            continue
        name = ax.get_title() or f"axes {index}"
        if _has_data(ax):
            if not (ax.get_title() or suptitle):
                problems.append(f"axes {index} shows data but has no title (and the figure no suptitle)")
            for axis in "xy":
                if not _named(ax, axis, fig):
                    problems.append(f"{name}: no {axis} label (set_{axis}label, or tick labels on an image)")
        for axis in "xy":
            clash = _overlaps(_tick_labels(ax, axis), renderer)
            if clash:
                problems.append(f"{name}: {axis} tick labels overlap, e.g. {clash[0][0]!r} and {clash[0][1]!r}")
        clash = _overlaps([t for t in ax.texts if t.get_visible() and t.get_text()], renderer)
        if clash:
            problems.append(f"{name}: texts overlap, e.g. {clash[0][0]!r} and {clash[0][1]!r}")
    return problems


def check_figure(fig: Figure) -> Figure:
    """`fig`, or a FigureStyleError listing what `audit_figure` found wrong with it."""
    problems = audit_figure(fig)
    if problems:
        raise FigureStyleError("this figure breaks the course's figure rules (mi_course/viz/style.py):\n  - "
                               + "\n  - ".join(problems))
    return fig


def install_audit(shell: Any = None) -> bool:
    """Audit every Figure an IPython kernel displays (as a cell's value or with `display`).

    The audit runs inside the text/plain formatter, which IPython calls for every displayed
    object whatever the matplotlib backend; an error there is shown as the cell's error, so
    nbval and nbclient fail the cell. Matplotlib's inline backend drops Figure printers when
    it starts, so the printer is registered again before every cell. Returns False outside IPython.
    """
    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return False
        shell = get_ipython()
    if shell is None:
        return False

    def audited_repr(fig: Figure, printer: Any, cycle: bool) -> None:
        check_figure(fig)
        printer.text(repr(fig))

    def register(*_: Any) -> None:
        shell.display_formatter.formatters["text/plain"].for_type(Figure, audited_repr)

    import matplotlib.pyplot as plt

    plt.close(plt.figure())   # start the backend first: starting resets the printers
    register()
    if not getattr(shell, "_mi_course_figure_audit", False):
        shell.events.register("pre_run_cell", register)
        shell._mi_course_figure_audit = True
    return True
