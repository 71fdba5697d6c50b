"""Each submission in its own throw-away folder, and a check that it left the course unchanged.

`sandbox_dir` is the submission's whole world: HOME, IPython and Jupyter folders, matplotlib's
cache, TMPDIR and the working directory all live in it, and it is deleted afterwards.
`course_hashes` hashes what a submission could tamper with to change *another* submission's
grade: the installed package, the solution and chapter notebooks, interpreter start-up hooks
(`*.pth`, sitecustomize) and the instructor's own IPython start-up folders.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import site
import sys
import sysconfig
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import mi_course
from mi_course import notebooks


@contextmanager
def sandbox_dir() -> Iterator[Path]:
    box = Path(tempfile.mkdtemp(prefix="mi-course-grade-")).resolve()
    try:
        for sub in ("home", "tmp", "work", "ipython", "jupyter/config", "jupyter/data", "jupyter/runtime", "mpl"):
            (box / sub).mkdir(parents=True)
        yield box
    finally:
        shutil.rmtree(box, ignore_errors=True)


def sandbox_env(box: Path) -> dict[str, str]:
    """The worker's environment: nothing of the instructor's HOME, nothing writable outside `box`."""
    keep = ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV", "CUDA_VISIBLE_DEVICES")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(HOME=str(box / "home"), TMPDIR=str(box / "tmp"), IPYTHONDIR=str(box / "ipython"),
               JUPYTER_CONFIG_DIR=str(box / "jupyter/config"), JUPYTER_DATA_DIR=str(box / "jupyter/data"),
               JUPYTER_RUNTIME_DIR=str(box / "jupyter/runtime"), MPLCONFIGDIR=str(box / "mpl"),
               XDG_CACHE_HOME=str(box / "home/.cache"), XDG_CONFIG_HOME=str(box / "home/.config"),
               MI_COURSE_PROGRESS=str(box / "home/progress.json"), MPLBACKEND="Agg", TQDM_DISABLE="1",
               PYTHONNOUSERSITE="1", PYTHONDONTWRITEBYTECODE="1", PYTHONHASHSEED="0",
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def course_paths() -> list[Path]:
    """The installed package and the course's notebooks: what learner code may not read or change."""
    root = notebooks.repo_root()
    return [Path(mi_course.__file__).resolve().parent, root / "solutions", root / "chapters"]


def watched_paths() -> list[Path]:
    """Folders and files whose change would let one submission reach another's grade."""
    paths = course_paths()
    site_dirs = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()}
    for d in map(Path, site_dirs):
        paths += sorted(d.glob("*.pth")) + [d / "sitecustomize.py", d / "usercustomize.py"]
    home_ipython = Path(os.environ.get("IPYTHONDIR", Path.home() / ".ipython"))
    paths += sorted(home_ipython.glob("profile_*/startup")) + [Path(sys.prefix) / "etc" / "ipython"]
    return paths


def course_hashes(paths: list[Path] | None = None) -> dict[str, str]:
    """path -> sha256 for every file under `paths` (bytecode caches aside); missing files too."""
    out: dict[str, str] = {}
    for base in paths if paths is not None else watched_paths():
        files = sorted(p for p in base.rglob("*") if p.is_file()) if base.is_dir() else [base]
        for f in files:
            if "__pycache__" in f.parts:
                continue
            try:
                out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
            except OSError:
                out[str(f)] = "missing"
    return out


def changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Files added, removed or modified between two `course_hashes`."""
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
