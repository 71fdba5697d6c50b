"""The `mi-course` command: progress and grade (doctor has its own tests)."""

import csv
import json

import nbformat

from mi_course import cli
from mi_course.grading import all_exercises

GRADED_NOTEBOOK = [
    "import torch\nfrom mi_course.grading import Case, Exercise, Mistake, register, check",
    "register(Exercise(id='ch00.double', title='Double', reference=lambda x: x * 2,\n"
    "    cases=lambda: [Case(args=(torch.ones(2),))],\n"
    "    mistakes=(Mistake('triple', lambda x: x * 3, 'two, not three'), Mistake('square', lambda x: x ** 2, 'times two')),\n"
    "))\nregister(Exercise(id='ch00.half', title='Half', reference=lambda x: x / 2,\n"
    "    cases=lambda: [Case(args=(torch.ones(2),))],\n"
    "    mistakes=(Mistake('a', lambda x: x, 'a'), Mistake('b', lambda x: x * 2, 'b')),\n))",
    "double = check('ch00.double', lambda x: x * 2).use\nhalf = check('ch00.half', lambda x: x * 3).use",
]


def test_progress_table(tmp_path, capsys):
    first = all_exercises()[0]
    path = tmp_path / "p.json"
    path.write_text(json.dumps({first.id: {"status": "passed", "attempts": 1}}))
    assert cli.main(["progress", "--file", str(path), "-v"]) == 0
    out = capsys.readouterr().out
    assert f"passed           {first.id}" in out
    label = cli._chapter_titles().get(first.chapter, first.chapter)
    row = next(line for line in out.splitlines() if line.startswith(label))
    assert row.split()[1] == "1"


def test_grade_executes_submissions_and_writes_csv(tmp_path, capsys):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in GRADED_NOTEBOOK]
    good, broken = tmp_path / "alice.ipynb", tmp_path / "bob.ipynb"
    nbformat.write(nb, good)
    nb.cells.append(nbformat.v4.new_code_cell("1 / 0"))
    nbformat.write(nb, broken)
    out_csv = tmp_path / "grades.csv"
    assert cli.main(["grade", str(good), str(broken), "--out", str(out_csv), "--timeout", "120"]) == 0
    rows = list(csv.DictReader(out_csv.open()))
    alice = {r["exercise"]: r["status"] for r in rows if r["notebook"] == str(good)}
    bob = {r["exercise"]: r["status"] for r in rows if r["notebook"] == str(broken)}
    assert alice == {"ch00.double": "passed", "ch00.half": "failed"}
    assert bob["(run)"].startswith("stopped: ") and "ZeroDivisionError" in bob["(run)"]
    assert "1/2 passed; ran to the end" in capsys.readouterr().out
