"""Run a learner's function so that nothing it does can crash or hang the notebook.

Every failure becomes a one-line `Failure`: the stub's NotImplementedError, any other
exception (with the line of the learner's code that raised it), a time-out, or an input
modified in place.
"""

from __future__ import annotations

import copy
import signal
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import torch

_PACKAGE_DIR = str(Path(__file__).resolve().parent.parent)


@dataclass
class Failure:
    """Why a call produced no usable output. `kind` is one of
    "not_implemented", "exception", "timeout", "in_place"."""

    kind: str
    message: str


class _TimeLimit(BaseException):
    """Raised by the alarm; a BaseException so a learner's `except Exception` cannot eat it."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Interrupt Python code after `seconds` (SIGALRM; main thread on POSIX only).

    Elsewhere the call runs to completion and the caller compares the elapsed time.
    """
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def _raise(signum: int, frame: Any) -> None:
        raise _TimeLimit()

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _learner_line(exc: BaseException) -> str:
    """Where in the learner's own code the exception came from (not torch, not us)."""
    frames = traceback.extract_tb(exc.__traceback__)
    for frame in reversed(frames):
        name = frame.filename
        if "site-packages" in name or name.startswith(_PACKAGE_DIR) or "/lib/python" in name:
            continue
        code = (frame.line or "").strip()
        return f" (in {frame.name}, line {frame.lineno}: `{code}`)" if code else f" (in {frame.name})"
    return ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    return line if len(line) <= 160 else line[:157] + "..."


def _snapshot(value: Any) -> Any:
    try:
        return copy.deepcopy(value)
    except Exception:  # unpicklable inputs (generators of data, open files) are not watched
        return None


def _modified(before: Any, after: Any) -> bool:
    """True when a tensor inside `after` no longer equals its copy in `before`."""
    if before is None:
        return False
    if isinstance(after, torch.Tensor):
        if after.device.type == "meta":
            return False
        return before.shape != after.shape or not torch.equal(before, after)
    if isinstance(after, torch.nn.Module):
        b, a = before.state_dict(), after.state_dict()
        return any(_modified(b[k], a[k]) for k in a if k in b)
    if isinstance(after, (list, tuple)) and isinstance(before, (list, tuple)):
        return len(before) != len(after) or any(_modified(b, a) for b, a in zip(before, after))
    if isinstance(after, dict) and isinstance(before, dict):
        return any(_modified(before.get(k), v) for k, v in after.items())
    return False


def call(fn: Callable, args: tuple, kwargs: dict, timeout_s: float,
         watch_inputs: bool = True) -> tuple[Any, Optional[Failure]]:
    """Call fn(*args, **kwargs) under a time limit; return (output, failure or None)."""
    before = _snapshot((args, kwargs)) if watch_inputs else None
    start = time.perf_counter()
    try:
        with time_limit(timeout_s):
            out = fn(*args, **kwargs)
    except NotImplementedError as exc:
        return None, Failure("not_implemented", f"not implemented yet{_learner_line(exc)}")
    except _TimeLimit:
        return None, Failure("timeout", f"did not finish within {timeout_s:g} s: look for an endless "
                                        "loop, or a Python loop where a batched tensor operation would do")
    except SystemExit:
        return None, Failure("exception", "called exit(): return a value instead of stopping Python")
    except Exception as exc:  # the learner's bug, reported in one line
        return None, Failure("exception", f"raised {type(exc).__name__}: {_first_line(exc)}{_learner_line(exc)}")
    elapsed = time.perf_counter() - start
    if elapsed > timeout_s:
        return None, Failure("timeout", f"took {elapsed:.1f} s, over the {timeout_s:g} s limit")
    if watch_inputs and _modified(before, (args, kwargs)):
        return out, Failure("in_place", "modified its input in place: work on a copy (x.clone()) or use "
                                        "out-of-place operations (x = x * 2, not x *= 2 or x.mul_(2))")
    return out, None
