"""Where code runs and how: device choice, seeds, threads, quiet progress bars, figure style."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

DEVICE_ENV = "MI_COURSE_DEVICE"
THREADS_ENV = "MI_COURSE_THREADS"
AUDIT_ENV = "MI_COURSE_AUDIT_FIGURES"


def get_device() -> torch.device:
    """CUDA when present, else CPU. Apple MPS only when MI_COURSE_DEVICE=mps, since it has
    given silently wrong TransformerLens results; MI_COURSE_DEVICE may also force cpu/cuda."""
    wanted = os.environ.get(DEVICE_ENV, "").strip().lower()
    if wanted == "mps":
        if not torch.backends.mps.is_available():
            raise RuntimeError(f"{DEVICE_ENV}=mps, but this torch build has no MPS backend")
        return torch.device("mps")
    if wanted == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"{DEVICE_ENV}=cuda, but torch sees no CUDA device")
    if wanted in ("cpu", "cuda"):
        return torch.device(wanted)
    if wanted:
        raise ValueError(f"{DEVICE_ENV}={wanted!r}: use cpu, cuda or mps")
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_threads() -> int:
    """Leave a core free: on a shared 2-core machine torch's default threading can be tens of
    times slower under contention."""
    if os.environ.get(THREADS_ENV):
        return max(1, int(os.environ[THREADS_ENV]))
    return min(4, max(1, (os.cpu_count() or 1) - 1))


def under_test() -> bool:
    return "PYTEST_VERSION" in os.environ or os.environ.get("CI", "").lower() in ("1", "true")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def setup(seed: int = 0, threads: int | None = None, verbose: bool = True) -> torch.device:
    """One call at the top of every notebook: seed, set threads, the course's figure style;
    under tests, quiet progress bars and every figure shown audited (`mi_course.viz.style`).
    MI_COURSE_AUDIT_FIGURES=1 turns the audit on outside tests too."""
    from mi_course.viz import style

    seed_everything(seed)
    torch.set_num_threads(threads or default_threads())
    style.apply_style()
    if under_test():
        os.environ["TQDM_DISABLE"] = "1"
    if under_test() or os.environ.get(AUDIT_ENV, "").strip() in ("1", "true"):
        style.install_audit()
    device = get_device()
    if verbose:
        print(f"mi-course: device {device.type}, {torch.get_num_threads()} torch thread(s), seed {seed}")
    return device
