"""The README's setup: one light command for a CPU laptop, and a course install that never
replaces a torch that already satisfies the pin (a GPU user's CUDA build); CI runs that command."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from mi_course import doctor

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = (ROOT / "requirements.txt").read_text()
TORCH_LINE = next(line for line in REQUIREMENTS.splitlines() if re.match(r"torch\b", line))


def readme_setup_commands() -> list[str]:
    """The command lines of the first code block under the README's "Setup" heading."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Setup", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_the_one_setup_command_is_what_ci_runs():
    commands = readme_setup_commands()
    assert commands == ["pip install -r requirements.txt"], commands
    ci = (ROOT / ".ci" / "run").read_text()
    assert f"python3 -m {commands[0]}" in ci


def test_requirements_pin_torch_and_search_the_cpu_index():
    assert TORCH_LINE == f"torch=={doctor.TESTED_TORCH}"
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in REQUIREMENTS.splitlines()
    assert f"torch {doctor.TESTED_TORCH}" in (ROOT / "README.md").read_text()


def _fake_torch_wheel(folder: Path, version: str) -> None:
    """An empty wheel named torch VERSION: a candidate that pip may pick, without a download."""
    info = f"torch-{version}.dist-info"
    with zipfile.ZipFile(folder / f"torch-{version}-py3-none-any.whl", "w") as wheel:
        wheel.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: torch\nVersion: {version}\n")
        wheel.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr(f"{info}/RECORD", "")


def _would_install(tmp_path: Path, installed: str) -> list[str]:
    """What `pip install` of requirements.txt's torch line would install, with torch INSTALLED
    already present and a "CPU build" of the pinned release on offer. Hermetic: no index, no
    pip config, only the offered wheel."""
    site, wheels = tmp_path / f"site-{installed}", tmp_path / "wheels"
    (site / f"torch-{installed}.dist-info").mkdir(parents=True)
    (site / f"torch-{installed}.dist-info" / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: torch\nVersion: {installed}\n")
    wheels.mkdir(exist_ok=True)
    _fake_torch_wheel(wheels, f"{doctor.TESTED_TORCH}+cpu")
    requirements = tmp_path / "torch.txt"
    requirements.write_text(TORCH_LINE + "\n")
    report = tmp_path / f"report-{installed}.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PYTHONPATH=os.pathsep.join([str(site), env.get("PYTHONPATH", "")]))
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--no-index",
                          "--find-links", str(wheels), "--report", str(report), "--quiet", "-r", str(requirements)],
                         env=env, capture_output=True, text=True, timeout=120)
    assert pip.returncode == 0, pip.stderr
    return [item["metadata"]["version"] for item in json.loads(report.read_text())["install"]]


@pytest.mark.parametrize("installed", [doctor.TESTED_TORCH, f"{doctor.TESTED_TORCH}+cu130"])
def test_a_torch_that_satisfies_the_pin_is_kept(tmp_path, installed):
    """A GPU user's torch of the pinned release (PyPI's Linux build, or a +cuXY one) stays, though
    the CPU index offers a build of the same release that pip would rank higher."""
    assert _would_install(tmp_path, installed) == []


def test_a_torch_of_another_release_is_replaced(tmp_path):
    """The control: the check above can fail."""
    assert _would_install(tmp_path, "2.12.0+cu126") == [f"{doctor.TESTED_TORCH}+cpu"]
