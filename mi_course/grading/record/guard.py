"""Inside the worker: lock the course's references away and fence the learner's code in.

Two locks, both armed once and never lifted (the worker is thrown away afterwards):

* `lock_functions` swaps the code of every reference function (and every `forbidden` library
  function) for one that raises "uses the course's reference". Every name bound to the function,
  every wrapper and `functools.partial` around it, reaches the same locked code.
* `fence` adds an audit hook (PEP 578; a hook cannot be removed) that refuses, from then on:
  writing or deleting files outside the worker's own folder, reading the course's sources and
  solution notebooks (no re-importing a reference, no `inspect.getsource`, no running the
  solution notebook), starting processes, signalling other processes, ctypes, walking the
  garbage collector to find hidden objects, and `exec`/`eval`/`compile` called from an answer.
  `torch.from_file` (which reads files without Python's `open`) is taken away.
"""

from __future__ import annotations

import functools
import importlib
import linecache
import os
import sys
import types
from pathlib import Path
from typing import Any, Iterable

LOCKED_MESSAGE = "uses the course's reference"
LEARNER_CODE = "<answer cell"
"""How the worker names the answer cells it compiles (their code objects' file name)."""


def _refuse(*args: Any, **kwargs: Any) -> None:
    raise PermissionError("grading: reading files with from_file is not allowed")


def _locked_code(name: str):
    message = f"{LOCKED_MESSAGE} ({name}), which is locked while a grade is recorded"
    scope: dict[str, Any] = {}
    exec(f"def locked(*args, **kwargs):\n    raise RuntimeError({message!r})", scope)
    return scope["locked"].__code__


def underlying(fn: Any) -> Any:
    """The function inside wrappers (`functools.wraps`, `functools.partial`)."""
    while True:
        inner = getattr(fn, "__wrapped__", None) or getattr(fn, "func", None)
        if inner is None or inner is fn:
            return fn
        fn = inner


def behind(fn: Any) -> list[types.FunctionType]:
    """The course's functions a reference calls by name (`repeated_tokens(...)`, `circuits.head_outputs(...)`):
    a reference that is a thin wrapper must not leave the function doing the work open."""
    fn = underlying(fn)
    code, scope = getattr(fn, "__code__", None), getattr(fn, "__globals__", {})
    if code is None:
        return []
    found = []
    for name in code.co_names:
        value = scope.get(name)
        if isinstance(value, types.ModuleType) and value.__name__.startswith("mi_course."):
            found += [getattr(value, attr, None) for attr in code.co_names]
        else:
            found.append(value)
    return [f for f in dict.fromkeys(found) if isinstance(f, types.FunctionType)
            and f.__module__.startswith("mi_course.") and not f.__module__.startswith("mi_course.grading")]


def to_lock(exercises: Iterable[Any]) -> list[Any]:
    """The course functions to lock for `exercises`: each reference and the course functions it
    calls (`behind`), less the helpers the exercises hand out (`Exercise.handed_out`), which
    stay open unless they are a reference themselves."""
    exercises = list(exercises)
    references = [ex.reference for ex in exercises if callable(ex.reference)]
    open_ids = {id(underlying(_resolve(name)[2])) for ex in exercises for name in ex.handed_out}
    open_ids -= {id(underlying(ref)) for ref in references}
    candidates = [f for ref in references for f in (ref, *behind(ref))]
    return [f for f in dict.fromkeys(candidates) if id(underlying(f)) not in open_ids]


def _resolve(dotted: str) -> tuple[Any, str, Any]:
    """(owner object, attribute name, value) for "package.module.attr[.attr]"."""
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            owner = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:-1]:
            owner = getattr(owner, attr)
        return owner, parts[-1], getattr(owner, parts[-1])
    raise ImportError(f"cannot find {dotted}")


def _clone(fn: Any) -> Any:
    """An unlocked copy of a function: same code, globals, defaults; a different object."""
    copy = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    copy.__kwdefaults__ = fn.__kwdefaults__
    return copy


def unlocked_inputs(value: Any, references: set[int], embedded: set[int]) -> Any:
    """`value` with every reference function inside it (a `features` partial of a case, say)
    replaced by an unlocked copy, so the case's own inputs still work once the references are
    locked. The ids of the references found are added to `embedded`."""
    if isinstance(value, functools.partial):
        func = unlocked_inputs(value.func, references, embedded)
        return functools.partial(func, *unlocked_inputs(value.args, references, embedded),
                                 **unlocked_inputs(value.keywords, references, embedded))
    if isinstance(value, types.FunctionType) and id(value) in references:
        embedded.add(id(value))
        return _clone(value)
    if isinstance(value, (list, tuple)):
        return type(value)(unlocked_inputs(v, references, embedded) for v in value)
    if isinstance(value, dict):
        return {k: unlocked_inputs(v, references, embedded) for k, v in value.items()}
    return value


def lock_functions(references: Iterable[Any], forbidden: Iterable[str]) -> list[str]:
    """Lock the reference callables and the dotted forbidden names; returns what was locked."""
    locked = []
    for ref in references:
        fn = underlying(ref)
        if callable(fn) and hasattr(fn, "__code__"):
            name = f"{fn.__module__}.{fn.__qualname__}"
            if not fn.__code__.co_freevars:
                fn.__code__ = _locked_code(name)
                locked.append(name)
    for dotted in forbidden:
        try:
            owner, attr, fn = _resolve(dotted)
        except (ImportError, AttributeError):
            continue
        fn = underlying(fn)
        if hasattr(fn, "__code__") and not fn.__code__.co_freevars:
            fn.__code__ = _locked_code(dotted)
        else:  # a builtin or a closure: replace the name the learner would reach
            raiser = _locked_code(dotted)
            setattr(owner, attr, type(lambda: None)(raiser, {"__builtins__": __builtins__}, attr))
        locked.append(dotted)
    return locked


_WRITE_EVENTS = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.symlink", "os.link", "os.chmod",
                 "os.chown", "os.truncate", "os.utime", "shutil.rmtree", "shutil.move", "shutil.copyfile",
                 "shutil.copytree", "os.replace"}
_PROCESS_EVENTS = {"subprocess.Popen", "os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork",
                   "os.forkpty", "pty.spawn", "os.startfile", "os.killpg", "os.setuid"}
_INSPECT_EVENTS = {"gc.get_objects", "gc.get_referrers", "gc.get_referents", "sys.addaudithook"}


def fence(box: Path, protected: Iterable[Path]) -> None:
    """Refuse, for the rest of this process, what a submission must not do (see module doc)."""
    box_s = str(Path(box).resolve()) + os.sep
    protected_s = tuple(str(Path(p).resolve()) + os.sep for p in protected)
    me = os.getpid()
    linecache.clearcache()  # no reference source left cached from the set-up

    def inside(path: Any) -> bool:
        try:
            return os.path.realpath(os.fsdecode(path)).startswith(box_s) or os.fsdecode(path) == os.devnull
        except (TypeError, ValueError):
            return isinstance(path, int)  # an already-open file descriptor

    def course_source(path: Any) -> bool:
        try:
            real = os.path.realpath(os.fsdecode(path))
        except (TypeError, ValueError):
            return False
        return real.startswith(protected_s) and real.endswith((".py", ".pyc", ".ipynb"))

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode = args[0], args[1] or "r"
            writes = any(c in str(mode) for c in "wax+") or (isinstance(args[2], int) and args[2] & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            if writes and not inside(path):
                raise PermissionError(f"grading: writing {path} is not allowed")
            if course_source(path):
                raise PermissionError(f"grading: reading the course's source ({path}) is not allowed")
        elif event in _WRITE_EVENTS:
            if not all(inside(a) for a in args[:2] if isinstance(a, (str, bytes, os.PathLike))):
                raise PermissionError(f"grading: {event} outside the grading folder is not allowed")
        elif event in _PROCESS_EVENTS:
            raise PermissionError(f"grading: {event} is not allowed")
        elif event == "os.kill" and args[0] != me:
            raise PermissionError("grading: signalling another process is not allowed")
        elif event.startswith("ctypes.") or event in _INSPECT_EVENTS:
            raise PermissionError(f"grading: {event} is not allowed")
        elif event == "object.__setattr__" and len(args) > 1 and args[1] == "__code__":
            raise PermissionError("grading: replacing a function's code is not allowed")
        elif event in ("compile", "exec") and sys._getframe(1).f_code.co_filename.startswith(LEARNER_CODE):
            raise PermissionError("grading: running code from a string (exec, eval, compile) is not allowed")

    sys.addaudithook(hook)
    import torch  # readers of files that bypass Python's `open` (so the hook never sees them)

    for owner in (torch, torch.UntypedStorage, torch.TypedStorage):
        setattr(owner, "from_file", _refuse)
