"""Each check's outcome, kept in a small JSON file so learners and instructors see progress.

The file is `~/.mi_course/progress.json`, or the path in `MI_COURSE_PROGRESS`.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from datetime import datetime, timezone
from pathlib import Path

ENV_VAR = "MI_COURSE_PROGRESS"


def progress_path() -> Path:
    custom = os.environ.get(ENV_VAR)
    return Path(custom).expanduser() if custom else Path.home() / ".mi_course" / "progress.json"


def load_progress(path: Path | None = None) -> dict[str, dict]:
    """exercise id -> {"status", "attempts", "updated"}; empty when there is no file yet."""
    path = path or progress_path()
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def record(exercise_id: str, status: str) -> None:
    """Store one outcome. A passed exercise stays passed; grading never fails on I/O."""
    path = progress_path()
    try:
        data = load_progress(path)
        entry = data.get(exercise_id, {"attempts": 0})
        entry["attempts"] = entry.get("attempts", 0) + 1
        if entry.get("status") != "passed":
            entry["status"] = status
        entry["updated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        data[exercise_id] = entry
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError as exc:
        warnings.warn(f"progress not saved to {path}: {exc}", stacklevel=2)
