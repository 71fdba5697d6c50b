"""A class of Chapter-1 submissions graded with `mi-course grade -j 2` (slow: minutes).

The issue's "class of 30": 20 complete, 5 untouched, 3 raising mid-way, 1 hanging, 1 not a
notebook, 1 killing its worker (which adds up to 31; all 31 are graded).
Prints the wall time and the peak memory of the grader and its workers together; the README's
"For instructors" section quotes a run of it:

    python -m pytest -q -m slow -s tests/test_instructor_grading_class.py
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

import grading_submissions as subs


def _tree_rss_mb(root: int) -> float:
    """Resident memory of `root` and all its descendants (Linux /proc), in MiB."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    tree, frontier = {root}, [root]
    while frontier:
        kids = [p for p, pp in parents.items() if pp in frontier and p not in tree]
        tree.update(kids)
        frontier = kids
    total = 0
    for pid in tree:
        try:
            total += next(int(ln.split()[1]) for ln in Path(f"/proc/{pid}/status").read_text().splitlines()
                          if ln.startswith("VmRSS:"))
        except (OSError, StopIteration):
            continue
    return total / 1024


def make_class(folder: Path) -> dict[str, list[Path]]:
    kinds: dict[str, list[Path]] = {"complete": [], "untouched": [], "raising": [], "hanging": [],
                                    "not a notebook": [], "killing": []}
    for i in range(20):
        kinds["complete"].append(subs.write(subs.submission(subs.REWRITTEN), folder / f"complete_{i:02d}.ipynb"))
    for i in range(5):
        kinds["untouched"].append(subs.write(subs.submission({}), folder / f"untouched_{i}.ipynb"))
    for i in range(3):  # raises in its fifth answer, and in a cell of its own half-way through
        nb = subs.submission({**subs.REWRITTEN, **subs.RAISING})
        nb.cells.insert(len(nb.cells) // 2, subs.nbformat.v4.new_code_cell("1 / 0"))
        kinds["raising"].append(subs.write(nb, folder / f"raising_{i}.ipynb"))
    kinds["hanging"].append(subs.write(subs.submission({**subs.REWRITTEN, **subs.HANGING}), folder / "hanging.ipynb"))
    (folder / "not_a_notebook.ipynb").write_text("print('hello')\n")
    kinds["not a notebook"].append(folder / "not_a_notebook.ipynb")
    kinds["killing"].append(subs.write(subs.submission({**subs.REWRITTEN, **subs.KILLER}), folder / "killing.ipynb"))
    return kinds


@pytest.mark.slow
def test_a_class_of_31_is_graded_in_minutes(tmp_path):
    kinds = make_class(tmp_path)
    paths = [p for group in kinds.values() for p in group]
    assert len(paths) == 31
    out = tmp_path / "grades.csv"
    env = {**os.environ, "PYTHONPATH": str(subs.ROOT)}
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "mi_course.cli", "grade", *map(str, paths), "--out", str(out),
                             "-j", "2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = [0.0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss_mb(proc.pid))
            time.sleep(0.25)

    sampler = threading.Thread(target=sample)
    sampler.start()
    log = proc.communicate()[0]
    sampler.join()
    wall = time.monotonic() - start
    load = os.getloadavg()
    print(log)
    print(f"class of {len(paths)}, -j 2: wall {wall:.0f} s, peak memory (grader + workers) {peak[0]:.0f} MiB, "
          f"load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} CPUs")
    assert proc.returncode == 0, log
    rows = list(csv.DictReader(out.open()))
    credit = Counter(r["submission"] for r in rows if r["status"] == "passed")
    by_kind = {kind: [credit[str(p)] for p in group] for kind, group in kinds.items()}
    print({kind: Counter(v) for kind, v in by_kind.items()})
    assert by_kind["complete"] == [11] * 20
    assert by_kind["untouched"] == [0] * 5 and by_kind["not a notebook"] == [0]
    assert by_kind["raising"] == [10] * 3
    problems = {r["submission"]: r["problem"] for r in rows}
    assert problems[str(kinds["hanging"][0])].startswith("timed out")
    assert "died" in problems[str(kinds["killing"][0])]
    assert out.with_suffix(".md").exists()


@pytest.mark.slow
def test_chapter_3_solution_is_right_on_every_hidden_case():
    from mi_course.grading.record import grade_class

    graded = grade_class([subs.ROOT / "solutions" / "03_induction_heads.ipynb"], limit_s=600, accept_similar=True)
    sub = graded.submissions[0]
    assert graded.chapter == "ch03" and sub.problem == ""
    assert sub.passed == len(sub.exercises) == 10, [(e.exercise_id, e.message) for e in sub.exercises]
