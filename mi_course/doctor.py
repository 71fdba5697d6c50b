"""`mi-course doctor`: is this machine ready for the course, and if not, what to do.

Each finding is a line: OK, WARN (works, but worth fixing) or FAIL (a chapter will not run).
"""

from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import dataclass
from importlib import metadata

MIN_PYTHON = (3, 10)


@dataclass
class Finding:
    level: str  # "OK", "WARN" or "FAIL"
    topic: str
    detail: str
    fix: str = ""


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def check_versions() -> list[Finding]:
    found = []
    py = platform.python_version()
    ok = sys.version_info[:2] >= MIN_PYTHON
    found.append(Finding("OK" if ok else "FAIL", "python", py,
                         "" if ok else "install Python 3.10 or newer"))
    for package, needed, fix in (
        ("torch", "2.6", "pip install torch==2.13.0 (CPU) or the CUDA build for your GPU"),
        ("transformer-lens", "4.3", "pip install 'transformer-lens>=4.3,<5'"),
        ("transformers", None, "pip install -r requirements.txt"),
        ("ipywidgets", None, "pip install ipywidgets (the attention explorer falls back to static plots)"),
        ("jupyterlab", None, "pip install jupyterlab"),
    ):
        version = _version(package)
        if version is None:
            level = "WARN" if package in ("ipywidgets", "jupyterlab") else "FAIL"
            found.append(Finding(level, package, "not installed", fix))
        elif needed and _older(version, needed):
            found.append(Finding("FAIL", package, f"{version} (need >= {needed})", fix))
        else:
            found.append(Finding("OK", package, version))
    return found


def _older(version: str, needed: str) -> bool:
    def parts(v: str) -> tuple[int, ...]:
        return tuple(int(p) for p in v.split("+")[0].split(".")[:2] if p.isdigit())

    return parts(version) < parts(needed)


def check_device() -> list[Finding]:
    import torch

    from mi_course.runtime import default_threads, get_device

    try:
        device = get_device()
    except (RuntimeError, ValueError) as exc:
        return [Finding("FAIL", "device", str(exc), "unset MI_COURSE_DEVICE or set it to cpu")]
    detail = device.type
    if device.type == "cuda":
        detail += f" ({torch.cuda.get_device_name(0)})"
    found = [Finding("OK", "device", detail)]
    cores = os.cpu_count() or 1
    found.append(Finding("OK", "threads", f"{cores} core(s); notebooks' setup() gives torch {default_threads()} "
                                          "thread(s) (MI_COURSE_THREADS overrides)"))
    return found


def check_models() -> list[Finding]:
    from mi_course.models import ModelUnavailableError, list_models, load_model

    found = []
    for info in list_models():
        if info.source != "shipped":
            continue
        start = time.perf_counter()
        try:
            load_model(info.name, device="cpu")
        except (ModelUnavailableError, OSError, RuntimeError, ValueError) as exc:
            found.append(Finding("FAIL", f"model {info.name}", f"does not load: {exc}",
                                 f"reinstall the package, or retrain: python -m mi_course.train {info.name}"))
            continue
        found.append(Finding("OK", f"model {info.name}",
                             f"loads in {time.perf_counter() - start:.1f} s ({info.size_mb:.2f} MB, for {info.chapter})"))
    return found


def check_hub() -> list[Finding]:
    from mi_course.models import hub

    start = time.perf_counter()
    if hub.offline_mode_set():
        state = "switched off (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set)"
        reachable = False
    else:
        reachable = hub.hub_reachable("gpt2")
        state = "reachable" if reachable else "not reachable"
    took = time.perf_counter() - start
    if reachable:
        return [Finding("OK", "model hub", f"{state} ({took:.1f} s): gpt2-small can be downloaded")]
    cached = hub.in_local_cache("gpt2")
    return [Finding("OK" if cached else "WARN", "model hub", f"{state} ({took:.1f} s); gpt2-small "
                    f"{'is' if cached else 'is not'} in the local cache",
                    "" if cached else "only the optional GPT-2 sections need it; every chapter runs "
                    "offline on the shipped models")]


def run_doctor(out=print) -> int:
    """Print every finding; exit status 1 if anything would stop a chapter."""
    findings: list[Finding] = []
    for step in (check_versions, check_device, check_models, check_hub):
        try:
            findings += step()
        except Exception as exc:  # a broken install must still get a report, not a traceback
            findings.append(Finding("FAIL", step.__name__.replace("check_", ""), f"{type(exc).__name__}: {exc}",
                                    "pip install -r requirements.txt"))
    for f in findings:
        out(f"{f.level:<5} {f.topic:<22} {f.detail}")
        if f.fix:
            out(f"{'':<5} {'':<22} -> {f.fix}")
    failed = sum(f.level == "FAIL" for f in findings)
    out(f"\n{failed} problem(s) would stop a chapter." if failed else "\nReady: every chapter can run here.")
    return 1 if failed else 0
