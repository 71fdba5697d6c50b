"""Execute a notebook top to bottom in a fresh kernel, as the notebook tests do.

Each run gets its own progress file, so what the checks recorded during the run is what the
learner would see. This is self-grading: the notebook's own kernel reports its checks. A grade
for a record (`mi-course grade`) never trusts a notebook's kernel: see `mi_course.grading.record`.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from mi_course.grading.progress import ENV_VAR, load_progress
from mi_course.grading.check import STRICT_ENV


@dataclass
class NotebookRun:
    """What one execution produced: per-exercise statuses, and the error that stopped it, if any."""

    path: Path
    statuses: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    notebook: nbformat.NotebookNode | None = None

    @property
    def completed(self) -> bool:
        return self.error is None


def execute_notebook(path: Path, timeout_s: int = 600, strict: bool = False,
                     extra_env: dict[str, str] | None = None) -> NotebookRun:
    """Run every cell of `path` in a new python3 kernel started in the notebook's folder."""
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as tmp:
        progress_file = Path(tmp) / "progress.json"
        env = {**os.environ, ENV_VAR: str(progress_file), STRICT_ENV: "1" if strict else "0",
               "TQDM_DISABLE": "1", "MPLBACKEND": "Agg", **(extra_env or {})}
        client = NotebookClient(nb, timeout=timeout_s, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent.resolve())}})
        error = None
        try:
            client.execute(env=env)
        except CellExecutionError as exc:
            error = _last_line(str(exc))
        except (CellTimeoutError, DeadKernelError, TimeoutError, RuntimeError) as exc:
            error = f"{type(exc).__name__}: {_last_line(str(exc))}"
        statuses = {k: v.get("status", "?") for k, v in load_progress(progress_file).items()}
    return NotebookRun(path, statuses, error, nb)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _last_line(text: str) -> str:
    lines = [ln for ln in _ANSI.sub("", text).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else text
