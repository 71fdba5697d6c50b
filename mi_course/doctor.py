"""`mi-course doctor`: is this machine ready for the course, and if not, what to do.

Each finding is a line: OK, WARN (works, but worth fixing) or FAIL (a chapter will not run).
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

MIN_PYTHON = (3, 10)
TESTED_TORCH = "2.13.0"  # the pin in requirements.txt
TO_CPU_BUILD = (
    "the CPU build saves ~2.9 GB of downloads and ~3.7 GB of disk: in a new virtual environment, "
    "`pip install -r requirements.txt` installs it; or here: `pip install --force-reinstall --no-deps "
    f"torch=={TESTED_TORCH} --index-url https://download.pytorch.org/whl/cpu`, then `pip uninstall` "
    "triton and the nvidia-* packages"
)
TO_CUDA_BUILD = (
    f"for the CUDA build (~2.9 GB): `pip uninstall -y torch && pip install torch=={TESTED_TORCH}` "
    "(on Linux PyPI's default build, CUDA 13.0; for Windows, an older driver or ROCm use the command "
    "pytorch.org's install selector gives)"
)


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
        ("torch", "2.6", "pip install -r requirements.txt (the CPU build; on a GPU machine install the "
                         "CUDA build first, see the README's Setup)"),
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


def nvidia_gpu_present() -> bool:
    """Whether this machine has an NVIDIA GPU and driver, whichever torch build is installed."""
    return Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi") is not None


def check_torch_build() -> list[Finding]:
    """Which torch build is installed (CPU, CUDA x.y, ROCm x.y) and whether it suits this machine:
    a CUDA build without a GPU costs ~2.9 GB for nothing; a CPU build leaves a GPU idle."""
    import torch

    cuda, rocm = torch.version.cuda, getattr(torch.version, "hip", None)
    build = f"ROCm {rocm} build" if rocm else f"CUDA {cuda} build" if cuda else "CPU build"
    detail = f"{torch.__version__}: {build}"
    if cuda or rocm:
        if torch.cuda.is_available():
            return [Finding("OK", "torch build", f"{detail}; uses the GPU ({torch.cuda.get_device_name(0)})")]
        if nvidia_gpu_present():
            return [Finding("WARN", "torch build", f"{detail}, but torch cannot use this machine's NVIDIA GPU "
                            "(a driver older than the build needs?)",
                            "update the NVIDIA driver, or install the torch build for your driver (the command "
                            "pytorch.org's install selector gives)")]
        return [Finding("WARN", "torch build", f"{detail}, but this machine has no GPU torch can use", TO_CPU_BUILD)]
    if nvidia_gpu_present():
        return [Finding("WARN", "torch build", f"{detail}, but this machine has an NVIDIA GPU", TO_CUDA_BUILD)]
    return [Finding("OK", "torch build", f"{detail}; matches this machine (no NVIDIA GPU)")]


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
                             f"loads in {time.perf_counter() - start:.1f} s ({info.size_mb:.2f} MB, for {info.chapter or 'no chapter'})"))
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
    for step in (check_versions, check_torch_build, check_device, check_models, check_hub):
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
