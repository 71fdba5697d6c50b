"""The repository stands alone: a clone has nothing beside it, so no file may point outside it
(a sibling folder, a workspace path, notes that only exist where the course was written)."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Spelled in pieces so that this file does not match itself.
OUTSIDE = re.compile("|".join((
    r"\.\./" + "shared", "COURSE" + "_DESIGN", "TL4" + "_NOTES", "STYLE" + "_EXAMPLES", "textbook" + "_page",
    "project " + "workspace", r"(?<![\w.])/" + "work/",
)))


def repo_files() -> list[Path]:
    """Tracked files (a clone's content), or every file when this is not a git checkout."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
        return [ROOT / name for name in listed.decode().split("\0") if name]
    except (OSError, subprocess.CalledProcessError):
        return [p for p in ROOT.rglob("*") if p.is_file() and ".git" not in p.parts]


def test_no_file_points_outside_the_repository():
    found = []
    for path in repo_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue  # weights and other binaries
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}")
    assert not found, "references outside the repository:\n" + "\n".join(found)


def test_the_check_catches_a_reference_outside():
    assert OUTSIDE.search("see `../" + "shared/COURSE" + "_DESIGN.md` in the project " + "workspace")
    assert OUTSIDE.search("cd /" + "work/main")
    assert not OUTSIDE.search("mi_course/weights/attn-only-2l/MODEL_CARD.md, work/, homework/x")
