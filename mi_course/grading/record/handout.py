"""The pristine hand-out of a chapter, and the learner's answers taken out of a submission.

This is nbgrader's "overwrite cells" idea at the grain of our build: the hand-out that
`mi_course.notebooks` builds from the instructor's solution notebook is the source of truth.
From a submission only the *solution regions* are taken (the lines that replace each stub the
build wrote); every other line of every cell comes from the hand-out again.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import nbformat

from mi_course import notebooks


def _stub_pattern(region: str, placeholders: dict[str, str]) -> re.Pattern:
    """A regex for the stub line `notebooks.strip_solutions` writes for `region`, with each
    placeholder turned into a capture group (so a change of the build's wording follows)."""
    line = next(ln for ln in notebooks.strip_solutions(region).split("\n") if "EXERCISE_ID" in ln)
    pattern = re.escape(line)
    for text, group in placeholders.items():
        pattern = pattern.replace(re.escape(text), group)
    return re.compile(f"^{pattern}$")


# The two stubs the build writes: an indented one inside a function (groups: indent, exercise),
# and one `name = ...` line per name a top-level (value) region assigns (groups: name, exercise).
_FUNCTION_STUB = _stub_pattern("def f():\n    # BEGIN SOLUTION EXERCISE_ID\n    pass\n    # END SOLUTION",
                               {"    ": r"(\s+)", "EXERCISE_ID": r"([\w.]+)"})
_VALUE_STUB = _stub_pattern("# BEGIN SOLUTION EXERCISE_ID\nVALUE_NAME = 1\n# END SOLUTION",
                            {"VALUE_NAME": r"(\w+)", "EXERCISE_ID": r"([\w.]+)"})
CHECK_CALL = re.compile(r"""check\(\s*["']([\w.]+)["']""")
_DEF = re.compile(r"^\s*def\s+(\w+)\s*\(")


@dataclass(frozen=True)
class Stub:
    """One stub of a hand-out cell: `lines[start:end]` of the cell are the stub's lines."""

    name: str
    start: int
    end: int
    indent: str  # "" for a value stub

    @property
    def is_value(self) -> bool:
        return not self.indent


@dataclass(frozen=True)
class AnswerCell:
    """A hand-out code cell that holds stubs, and the exercises its `check` calls grade."""

    index: int
    cell_id: Optional[str]
    lines: tuple[str, ...]
    stubs: tuple[Stub, ...]
    exercise_ids: tuple[str, ...]

    def segments(self) -> list[list[str]]:
        """The hand-out's own lines around the stubs: len(stubs) + 1 segments."""
        out, pos = [], 0
        for stub in self.stubs:
            out.append(list(self.lines[pos:stub.start]))
            pos = stub.end
        out.append(list(self.lines[pos:]))
        return out


@dataclass(frozen=True)
class Handout:
    """A chapter's hand-out as the grader sees it: set-up cells, then the answer cells."""

    chapter: str  # "ch01"
    setup_sources: tuple[str, ...]  # code cells before the first answer cell
    answer_cells: tuple[AnswerCell, ...]

    @property
    def exercise_ids(self) -> list[str]:
        return [i for cell in self.answer_cells for i in cell.exercise_ids]


def _stubs(lines: list[str]) -> list[Stub]:
    stubs: list[Stub] = []
    for i, line in enumerate(lines):
        m = _FUNCTION_STUB.match(line)
        if m:
            stubs.append(Stub(m.group(2), i, i + 1, m.group(1)))
            continue
        m = _VALUE_STUB.match(line)
        if m and stubs and stubs[-1].is_value and stubs[-1].name == m.group(2) and stubs[-1].end == i:
            stubs[-1] = Stub(m.group(2), stubs[-1].start, i + 1, "")  # one region, several names
        elif m:
            stubs.append(Stub(m.group(2), i, i + 1, ""))
    return stubs


def load_handout(solution_path: Path) -> Handout:
    """Build the hand-out from the instructor's solution notebook, as `mi-course build` does."""
    chapter_nb = notebooks.build_notebook(nbformat.read(solution_path, as_version=4))
    setup, answers = [], []
    for index, cell in enumerate(chapter_nb.cells):
        if cell.cell_type != "code":
            continue
        lines = cell.source.split("\n")
        stubs = _stubs(lines)
        if not stubs:
            if not answers:
                setup.append(cell.source)
            continue
        ids = tuple(dict.fromkeys(CHECK_CALL.findall(cell.source)))
        answers.append(AnswerCell(index, cell.get("id"), tuple(lines), tuple(stubs), ids))
    return Handout(f"ch{Path(solution_path).stem[:2]}", tuple(setup), tuple(answers))


def solution_path(chapter: str, root: Optional[Path] = None) -> Path:
    """solutions/NN_*.ipynb for "chNN"."""
    root = root or notebooks.repo_root()
    matches = sorted((root / "solutions").glob(f"{chapter[2:]}_*.ipynb"))
    if not matches:
        raise FileNotFoundError(f"no solution notebook for {chapter} in {root / 'solutions'}")
    return matches[0]


# --- taking the learner's regions out of a submission -----------------------------------------


def _learner_cell(submission: nbformat.NotebookNode, cell: AnswerCell) -> Optional[list[str]]:
    """The submission's version of a hand-out answer cell: same cell id, else the last code cell
    that calls `check` on the same exercise."""
    code = [c for c in submission.cells if c.get("cell_type") == "code" and isinstance(c.get("source"), str)]
    for c in code:
        if cell.cell_id and c.get("id") == cell.cell_id:
            return c.source.split("\n")
    wanted = set(cell.exercise_ids)
    found = [c for c in code if wanted & set(CHECK_CALL.findall(c.source))]
    return found[-1].source.split("\n") if found else None


def _find(block: list[str], lines: list[str], start: int) -> Optional[int]:
    """First index >= start where `block` occurs in `lines` (trailing spaces ignored)."""
    want = [b.rstrip() for b in block]
    have = [h.rstrip() for h in lines]
    for i in range(start, len(have) - len(want) + 1):
        if have[i:i + len(want)] == want:
            return i
    return None


def _by_segments(cell: AnswerCell, lines: list[str]) -> Optional[list[list[str]]]:
    """Regions as the lines between the hand-out's own segments, when the learner kept those."""
    segments = cell.segments()
    if _find(segments[0], lines, 0) != 0:
        return None
    pos, regions = len(segments[0]), []
    for k, segment in enumerate(segments[1:]):
        last = k == len(segments) - 2
        at = len(lines) - len(segment) if last else _find(segment, lines, pos) if segment else None
        if at is None or at < pos or (last and _find(segment, lines, at) != at):
            return None
        regions.append(lines[pos:at])
        pos = at + len(segment)
    return regions


def _function_body(lines: list[str], stub: Stub, cell: AnswerCell) -> Optional[list[str]]:
    """Fallback for an edited signature or docstring: the body of the learner's function that
    holds the stub, without its docstring."""
    header = next((ln for ln in reversed(cell.lines[:stub.start]) if _DEF.match(ln)), None)
    if header is None:
        return None
    name = _DEF.match(header).group(1)
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:
        return None
    defs = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == name]
    if not defs:
        return None
    body, start = defs[-1].body, defs[-1].body[0].lineno - 1
    if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
        if len(body) == 1:
            return None
        start = body[0].end_lineno  # after the docstring, comments included
    return lines[start:body[-1].end_lineno]


def take_regions(submission: nbformat.NotebookNode, handout: Handout) -> dict[tuple[int, int], Optional[list[str]]]:
    """(answer cell index, stub index) -> the learner's lines for that region, or None when the
    submission has no recognisable version of it (graded as not implemented)."""
    regions: dict[tuple[int, int], Optional[list[str]]] = {}
    for ci, cell in enumerate(handout.answer_cells):
        lines = _learner_cell(submission, cell)
        found = _by_segments(cell, lines) if lines is not None else None
        for si, stub in enumerate(cell.stubs):
            if found is not None:
                regions[(ci, si)] = found[si]
            elif lines is not None and not stub.is_value and len(cell.stubs) == 1:
                regions[(ci, si)] = _function_body(lines, stub, cell)
            else:
                regions[(ci, si)] = None
    return regions


def rebuild_cell(cell: AnswerCell, regions: list[Optional[list[str]]]) -> str:
    """The hand-out cell with each stub replaced by the learner's region (a missing one keeps
    the stub). Function regions are re-indented to the stub's indentation."""
    segments = cell.segments()
    out = list(segments[0])
    for stub, region, segment in zip(cell.stubs, regions, segments[1:]):
        out += list(cell.lines[stub.start:stub.end]) if region is None else _reindent(region, stub.indent)
        out += segment
    return "\n".join(out)


def _reindent(region: list[str], indent: str) -> list[str]:
    if not indent:
        return region
    present = [ln for ln in region if ln.strip()]
    if not present:
        return [f"{indent}pass"]
    common = min(len(ln) - len(ln.lstrip()) for ln in present)
    return [indent + ln[common:] if ln.strip() else ln for ln in region]
