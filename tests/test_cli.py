"""The `mi-course` command: progress, run, train, build (doctor and grade have their own tests)."""

import json

from mi_course import cli
from mi_course.grading import all_exercises


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
