"""One source: `solutions/*.ipynb` -> the learner's `chapters/*.ipynb`.

The build replaces each region between `# BEGIN SOLUTION` and `# END SOLUTION` lines with a
stub, drops cells tagged `solution-only`, and clears outputs. It also gives both notebooks the
full kernel metadata (`KERNEL_METADATA`), so tools such as `jupyter nbconvert --to script` know
they hold Python. An indented region (inside a
function) becomes `raise NotImplementedError(...)` naming the exercise; a top-level region
(a value answer) becomes `name = ...` for each name it assigns.

    python -m mi_course.notebooks --build     # write chapters/
    python -m mi_course.notebooks --check     # exit 1, naming notebooks out of date
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

import nbformat

BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
SOLUTION_ONLY_TAG = "solution-only"
_CHECK_ID = re.compile(r"""check\(\s*["']([\w.]+)["']""")
_DEF = re.compile(r"^(\s*)def\s+(\w+)\s*\(")


KERNEL_METADATA = {
    "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
    "language_info": {
        "codemirror_mode": {"name": "ipython", "version": 3},
        "file_extension": ".py",
        "mimetype": "text/x-python",
        "name": "python",
        "nbconvert_exporter": "python",
        "pygments_lexer": "ipython3",
        "version": "3",
    },
}
"""What a python3 kernel writes into a notebook it ran (the version pinned to the major one, so
the build's output does not depend on the Python that ran it)."""


class BuildError(ValueError):
    """A solution notebook whose markers cannot be turned into stubs."""


def repo_root() -> Path:
    """The course folder: the working directory if it holds solutions/, else the checkout."""
    cwd = Path.cwd()
    return cwd if (cwd / "solutions").is_dir() else Path(__file__).resolve().parent.parent


def _exercise_name(lines: list[str], begin: int, marker_text: str, cell_source: str) -> str:
    if marker_text:
        return marker_text
    ids = set(_CHECK_ID.findall(cell_source))
    if len(ids) == 1:
        return ids.pop()
    for line in reversed(lines[:begin]):
        m = _DEF.match(line)
        if m:
            return m.group(2)
    raise BuildError(f"cannot tell which exercise the region at line {begin + 1} belongs to; "
                     f"write its id after {BEGIN!r}")


def _value_stub(region: list[str], name: str) -> list[str]:
    try:
        tree = ast.parse("\n".join(region))
    except SyntaxError as exc:
        raise BuildError(f"top-level solution region for {name} is not valid Python: {exc}") from exc
    targets = []
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets += [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            targets.append(node.target.id)
    if not targets:
        raise BuildError(f"top-level solution region for {name} assigns no name")
    return [f"{t} = ...  # your answer ({name})" for t in dict.fromkeys(targets)]


def strip_solutions(source: str) -> str:
    """The cell source with every solution region replaced by its stub."""
    lines = source.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        if stripped.startswith(END):
            raise BuildError(f"{END!r} without {BEGIN!r} at line {i + 1}")
        if not stripped.startswith(BEGIN):
            out.append(lines[i])
            i += 1
            continue
        indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
        name = _exercise_name(lines, i, stripped[len(BEGIN):].strip(), source)
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip().startswith(END)), None)
        if end is None:
            raise BuildError(f"{BEGIN!r} for {name} has no matching {END!r}")
        if indent:
            out.append(f'{indent}raise NotImplementedError("Exercise {name}: write your code here")')
        else:
            out += _value_stub(lines[i + 1:end], name)
        i = end + 1
    return "\n".join(out)


def with_kernel_metadata(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """`nb` (a new object) with `KERNEL_METADATA` in place of its kernelspec and language_info."""
    nb = nbformat.from_dict(nb)
    nb.metadata.update(nbformat.from_dict(KERNEL_METADATA))
    return nb


def build_notebook(solution: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The learner's notebook for one solution notebook (a new object; the input is untouched)."""
    chapter = with_kernel_metadata(solution)
    cells = []
    for cell in chapter.cells:
        if SOLUTION_ONLY_TAG in cell.get("metadata", {}).get("tags", []):
            continue
        if cell.cell_type == "code":
            cell.source = strip_solutions(cell.source)
            cell.outputs = []
            cell.execution_count = None
            cell.metadata.pop("execution", None)
        cells.append(cell)
    chapter.cells = cells
    return chapter


def render(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb) + "\n"


def expected_chapters(src: Path) -> dict[str, str]:
    """file name -> the exact text the build writes for it."""
    result = {}
    for path in sorted(src.glob("*.ipynb")):
        try:
            result[path.name] = render(build_notebook(nbformat.read(path, as_version=4)))
        except BuildError as exc:
            raise BuildError(f"{path}: {exc}") from exc
    return result


def solutions_lacking_metadata(src: Path) -> list[Path]:
    """Solution notebooks whose kernel metadata is not `KERNEL_METADATA`."""
    return [path for path in sorted(src.glob("*.ipynb"))
            if any(nbformat.read(path, as_version=4).metadata.get(key) != value
                   for key, value in KERNEL_METADATA.items())]


def build(src: Path, dst: Path) -> list[Path]:
    """Write every chapter notebook, and complete the kernel metadata of solutions that lack it."""
    dst.mkdir(parents=True, exist_ok=True)
    written = []
    for path in solutions_lacking_metadata(src):
        path.write_text(render(with_kernel_metadata(nbformat.read(path, as_version=4))))
        written.append(path)
    for name, text in expected_chapters(src).items():
        (dst / name).write_text(text)
        written.append(dst / name)
    return written


def out_of_date(src: Path, dst: Path) -> list[str]:
    """Chapter notebooks that differ from what the build writes, are missing, or have no source."""
    expected = expected_chapters(src)
    problems = []
    for name, text in expected.items():
        path = dst / name
        if not path.exists():
            problems.append(f"{name}: missing from {dst}")
        elif path.read_text() != text:
            problems.append(f"{name}: differs from the build of {src / name}")
    for path in sorted(dst.glob("*.ipynb")):
        if path.name not in expected:
            problems.append(f"{path.name}: has no source in {src}")
    problems += [f"{path.name}: incomplete kernel metadata in {src}" for path in solutions_lacking_metadata(src)]
    return problems


def main(argv: list[str] | None = None) -> int:
    root = repo_root()
    parser = argparse.ArgumentParser(prog="python -m mi_course.notebooks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--build", action="store_true", help="write the chapter notebooks")
    mode.add_argument("--check", action="store_true", help="fail if chapters/ is not what the build writes")
    parser.add_argument("--src", type=Path, default=root / "solutions")
    parser.add_argument("--dst", type=Path, default=root / "chapters")
    args = parser.parse_args(argv)
    try:
        if args.build:
            for path in build(args.src, args.dst):
                print(f"wrote {path}")
            return 0
        problems = out_of_date(args.src, args.dst)
    except BuildError as exc:
        print(f"build error: {exc}", file=sys.stderr)
        return 2
    if problems:
        print("chapters/ is out of date; run `mi-course build`:", *problems, sep="\n  ")
        return 1
    print(f"chapters/ matches the build of {args.src}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
