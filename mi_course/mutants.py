"""Broken-model switches ("mutants"): does a notebook's claim fail when the model is broken?

An assert about a trained model is only a claim if it can fail. Setting `MI_COURSE_MUTANT`
before a notebook runs breaks every model it touches, and the slow mutant test counts which
assert cells fail:

- ``random-init``: `load_model` returns the same architecture with fresh random weights;
- ``earliest``: `load_model` returns the earliest training snapshot (random init when the
  model ships none);
- ``untrained``: training run inside a notebook returns its initial weights (functions that
  train call `skip_training()`), and `load_model` returns random weights.

Cells whose asserts are identities (softmax rows sum to 1, attributions add up) hold under
every mutant; they carry the cell tag ``sanity`` and are exempt.

    python -m mi_course.mutants solutions/03_induction_heads.ipynb   # which assert cells bite
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, TypeVar

MUTANT_ENV = "MI_COURSE_MUTANT"
KINDS = ("random-init", "earliest", "untrained")
SANITY_TAG = "sanity"


def active() -> Optional[str]:
    """The mutant in force, or None. An unknown name is an error, not a silent no-op."""
    kind = os.environ.get(MUTANT_ENV, "").strip()
    if not kind:
        return None
    if kind not in KINDS:
        raise ValueError(f"{MUTANT_ENV}={kind!r}; expected one of {', '.join(KINDS)}")
    return kind


def skip_training() -> bool:
    """True when in-notebook training should return its initial weights unchanged."""
    return active() == "untrained"


Train = TypeVar("Train", bound=Callable[..., tuple])


def trainer(train: Train, n_weights: int = 2) -> Train:
    """`train`, except under the ``untrained`` mutant: then its first `n_weights` arguments (the
    initial weights) come back unchanged, as copies, without training.

    Wrap every training function a notebook calls, so the mutant test can ask whether the
    notebook's claims about trained models need the training.
    """

    @functools.wraps(train)
    def maybe_train(*args, **kwargs):
        if skip_training():
            return tuple(arg.detach().clone() for arg in args[:n_weights])
        return train(*args, **kwargs)

    return maybe_train  # type: ignore[return-value]


# --- which assert cells bite ----------------------------------------------------------------

_ASSERT = re.compile(r"^\s*assert\b", re.MULTILINE)


@dataclass(frozen=True)
class AssertCell:
    """One code cell holding an assert, and the error it raised in one run (None: it passed).

    A NameError counts as not failing: it means an earlier cell failed and this one never
    tested its claim.
    """

    index: int
    first_line: str
    sanity: bool
    error: Optional[str]

    @property
    def failed(self) -> bool:
        return self.error is not None and not self.error.startswith("NameError")


def assert_cells(nb) -> list[tuple[int, str, bool]]:
    """(index, first line, tagged sanity) of every code cell with an assert statement."""
    return [
        (index, cell.source.strip().splitlines()[0], SANITY_TAG in cell.get("metadata", {}).get("tags", []))
        for index, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and _ASSERT.search(cell.source)
    ]


def run_notebook(path: str | Path, kind: Optional[str], timeout_s: int = 900) -> list[AssertCell]:
    """Execute `path` with `MI_COURSE_MUTANT=kind` (None: no mutant) and every error allowed,
    and report each assert cell: what it raised, if anything.

    Checks run lenient (a failing check falls back to the reference) with a fresh progress
    file, so a notebook fails only on its own asserts.
    """
    import nbformat
    from nbclient import NotebookClient

    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown mutant {kind!r}; expected one of {', '.join(KINDS)}")
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    env = {key: value for key, value in os.environ.items() if key not in (MUTANT_ENV, "MI_COURSE_STRICT")}
    with tempfile.TemporaryDirectory() as tmp:
        env.update(MI_COURSE_PROGRESS=str(Path(tmp) / "progress.json"), TQDM_DISABLE="1", MPLBACKEND="Agg")
        if kind is not None:
            env[MUTANT_ENV] = kind
        client = NotebookClient(nb, timeout=timeout_s, kernel_name="python3", allow_errors=True,
                                resources={"metadata": {"path": str(path.parent.resolve())}})
        client.execute(env=env)
    report = []
    for index, first_line, sanity in assert_cells(nb):
        errors = [out for out in nb.cells[index].get("outputs", []) if out.get("output_type") == "error"]
        error = f"{errors[0].ename}: {errors[0].evalue}" if errors else None
        report.append(AssertCell(index, first_line, sanity, error))
    return report


def toothless(reports: dict[str, list[AssertCell]]) -> list[AssertCell]:
    """Assert cells, not tagged sanity, that no mutant in `reports` (kind -> run) made fail."""
    failed = {cell.index for run in reports.values() for cell in run if cell.failed}
    first_run = next(iter(reports.values()))
    return [cell for cell in first_run if not cell.sanity and cell.index not in failed]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mi_course.mutants", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    args = parser.parse_args(argv)
    status = 0
    for path in args.notebooks:
        reports = {kind: run_notebook(path, kind) for kind in args.kinds}
        print(f"{path}:")
        for cell in reports[args.kinds[0]]:
            marks = "  ".join(
                f"{kind}={'FAIL' if run_cell.failed else 'pass'}"
                for kind, run in reports.items() for run_cell in run if run_cell.index == cell.index
            )
            print(f"  [{cell.index:3d}]{' sanity' if cell.sanity else '       '} {marks}  {cell.first_line[:60]}")
        for kind, run in reports.items():
            for cell in run:
                if cell.error:
                    print(f"    {kind} [{cell.index}] {cell.error[:150]}")
        bad = toothless(reports)
        if bad:
            status = 1
            print("  no mutant makes these fail:", *(f"[{c.index}] {c.first_line}" for c in bad), sep="\n    ")
    return status


if __name__ == "__main__":
    sys.exit(main())
