"""The `mi-course` command: progress, run, train, build (doctor and grade have their own tests)."""

import json
import signal
import sys
import time
from pathlib import Path

import lab_server
import pytest

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


class _Exec(Exception):
    """Stands for os.execv, which never returns."""


def _run_command(monkeypatch, argv: list[str], as_root: bool = False) -> list[str]:
    """The command line `mi-course run ARGV` would exec, as root or not."""
    monkeypatch.setattr(cli, "running_as_root", lambda: as_root)

    def execv(path, command):
        assert path == command[0]
        raise _Exec(command)

    monkeypatch.setattr(cli.os, "execv", execv)
    with pytest.raises(_Exec) as execed:
        cli.main(["run", *argv])
    return execed.value.args[0]


def test_run_becomes_jupyterlab_on_chapters_and_passes_options(monkeypatch, capsys):
    command = _run_command(monkeypatch, ["--no-browser", "--port", "8899"])
    assert command[1:3] == ["-m", "jupyterlab"]
    assert command[3].startswith("--notebook-dir=") and command[3].endswith("chapters")
    assert command[4:] == ["--no-browser", "--port", "8899"]
    assert "allow-root" not in capsys.readouterr().err
    command = _run_command(monkeypatch, ["--solutions"])
    assert command[3].endswith("solutions") and command[4:] == []


def test_run_as_root_adds_allow_root_and_says_so(monkeypatch, capsys):
    assert _run_command(monkeypatch, ["--no-browser"], as_root=True)[4:] == ["--allow-root", "--no-browser"]
    assert "running as root" in capsys.readouterr().err
    assert _run_command(monkeypatch, ["--allow-root"], as_root=True).count("--allow-root") == 1


def test_run_help_shows_its_options_and_where_the_rest_go(capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main(["run", "--help"])
    assert stopped.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--solutions" in text and "Every other option goes to JupyterLab" in text
    assert "--allow-root" in text


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs Linux /proc to look for leftover processes")
def test_sigterm_to_run_stops_jupyterlab(tmp_path):
    """A learner's `kill`, a container's stop: JupyterLab must go with `mi-course run`, not linger."""
    port, token = lab_server.free_port(), "t" * 32
    marker = f"--ServerApp.port={port}"
    process = lab_server.start([sys.executable, "-m", "mi_course.cli", "run", *lab_server.lab_options(port, token)],
                               tmp_path)
    try:
        lab_server.wait_until_serving(process, tmp_path, port, token)
        assert lab_server.processes_mentioning(marker), "the server should be found while it runs"
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
        deadline = time.monotonic() + 10
        while lab_server.processes_mentioning(marker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert lab_server.processes_mentioning(marker) == [], "JupyterLab outlived `mi-course run`"
    finally:
        lab_server.stop(process, marker)


def test_train_hands_its_arguments_to_the_training_cli(monkeypatch):
    import mi_course.train.__main__ as train_main

    seen = []
    monkeypatch.setattr(train_main, "main", lambda argv: seen.append(argv) or 0)
    assert cli.main(["train", "attn-only-2l", "--seed", "1"]) == 0
    assert seen == [["attn-only-2l", "--seed", "1"]]


def test_unknown_options_are_refused(capsys):
    with pytest.raises(SystemExit):
        cli.main(["progress", "--bogus"])
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_build_and_check_sync_commands():
    assert cli.main(["check-sync"]) == 0
