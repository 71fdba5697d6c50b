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


def test_run_opens_jupyterlab_on_chapters_and_passes_options(monkeypatch):
    calls = []
    monkeypatch.setattr(cli.subprocess, "call", lambda command: calls.append(command) or 0)
    assert cli.main(["run", "--no-browser", "--port", "8899"]) == 0
    command = calls[0]
    assert command[1:3] == ["-m", "jupyterlab"]
    assert command[3].startswith("--notebook-dir=") and command[3].endswith("chapters")
    assert command[4:] == ["--no-browser", "--port", "8899"]


def test_train_hands_its_arguments_to_the_training_cli(monkeypatch):
    import mi_course.train.__main__ as train_main

    seen = []
    monkeypatch.setattr(train_main, "main", lambda argv: seen.append(argv) or 0)
    assert cli.main(["train", "attn-only-2l", "--seed", "1"]) == 0
    assert seen == [["attn-only-2l", "--seed", "1"]]


def test_unknown_options_are_refused(capsys):
    import pytest

    with pytest.raises(SystemExit):
        cli.main(["progress", "--bogus"])
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_build_and_check_sync_commands():
    assert cli.main(["check-sync"]) == 0
