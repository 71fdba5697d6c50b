"""Plain data between the worker and the grader: tensors as safetensors, the rest as JSON.

Nothing is ever unpickled. An output is accepted only when it is built from plain tensors
(`type(x) is torch.Tensor`), numpy arrays, numbers, strings, None and lists, tuples and dicts
of those, and the course's own dataclasses (only their fields cross; the grader rebuilds the
class): a tensor subclass that compares equal to anything cannot cross.

`fingerprint` names a call's inputs by content, so the grader can tell which hidden case the
worker's output belongs to without either side trusting the other's objects.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import load_file as load_numpy, save_file as save_numpy
from safetensors.torch import load_file, save_file


def _course_dataclass(cls: type) -> bool:
    """A dataclass the course itself defines (an SAE's weights, say): its fields can cross."""
    return dataclasses.is_dataclass(cls) and cls.__module__.startswith("mi_course.") \
        and getattr(importlib.import_module(cls.__module__), cls.__qualname__, None) is cls


class NotPlain(TypeError):
    """An output that is not plain data; its message says what it was."""


def encode(value: Any, tensors: dict[str, Any]) -> Any:
    """A JSON-able description of `value`; tensors go into `tensors` under fresh keys."""
    if value is None or type(value) in (bool, str):
        return value
    if type(value) is int:
        return {"int": str(value)}
    if type(value) is float:
        return {"float": repr(value)}
    if isinstance(value, np.generic) and type(value).__module__ == "numpy":
        return encode(value.item(), tensors)
    if type(value) in (torch.Tensor, torch.nn.Parameter):
        tensor = value.detach()
        if tensor.is_sparse or tensor.layout != torch.strided:
            raise NotPlain(f"a {tensor.layout} tensor; return an ordinary (dense) torch.Tensor")
        if tensor.device.type == "meta":
            return {"meta": list(tensor.shape), "dtype": str(tensor.dtype)}
        key = f"t{len(tensors)}"
        tensors[key] = tensor.cpu().contiguous().clone()
        return {"tensor": key, "device": tensor.device.type}
    if isinstance(value, torch.Tensor):
        raise NotPlain(f"a subclass of torch.Tensor ({type(value).__name__}); return a plain torch.Tensor")
    if type(value) is np.ndarray:
        key = f"n{len(tensors)}"
        tensors[key] = np.ascontiguousarray(value)
        return {"ndarray": key}
    if type(value) in (list, tuple):
        return {type(value).__name__: [encode(v, tensors) for v in value]}
    if type(value) is dict and all(type(k) is str for k in value):
        return {"dict": {k: encode(v, tensors) for k, v in value.items()}}
    if _course_dataclass(type(value)):
        # Only the fields cross, as plain data; the grader rebuilds the course's own class.
        fields = {f.name: encode(getattr(value, f.name), tensors) for f in dataclasses.fields(value)}
        return {"dataclass": f"{type(value).__module__}:{type(value).__qualname__}", "fields": fields}
    raise NotPlain(f"a {type(value).__module__}.{type(value).__qualname__}, which cannot be graded; "
                   "return tensors, numbers, or lists/tuples/dicts of them")


def decode(spec: Any, tensors: dict[str, Any]) -> Any:
    if spec is None or isinstance(spec, (bool, str)):
        return spec
    (tag, body), = ((k, v) for k, v in spec.items() if k not in ("device", "dtype", "fields"))
    if tag == "int":
        return int(body)
    if tag == "float":
        return float(body)
    if tag == "meta":
        return torch.empty(body, dtype=getattr(torch, spec["dtype"].replace("torch.", "")), device="meta")
    if tag in ("tensor", "ndarray"):
        return tensors[body]
    if tag in ("list", "tuple"):
        items = [decode(v, tensors) for v in body]
        return items if tag == "list" else tuple(items)
    if tag == "dict":
        return {k: decode(v, tensors) for k, v in body.items()}
    if tag == "dataclass":
        module, _, name = body.partition(":")
        cls = getattr(importlib.import_module(module), name, None) if module.startswith("mi_course.") else None
        if cls is None or not _course_dataclass(cls):
            raise ValueError(f"{body!r} is not one of the course's dataclasses")
        return cls(**{k: decode(v, tensors) for k, v in spec["fields"].items()})
    raise ValueError(f"unknown output tag {tag!r}")


def save_tensors(tensors: dict[str, Any], path: Path) -> None:
    torch_part = {k: v for k, v in tensors.items() if isinstance(v, torch.Tensor)}
    numpy_part = {k: v for k, v in tensors.items() if not isinstance(v, torch.Tensor)}
    save_file(torch_part, str(path.with_suffix(".torch.safetensors")))
    save_numpy(numpy_part, str(path.with_suffix(".numpy.safetensors")))


def load_tensors(path: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for suffix, loader in ((".torch.safetensors", load_file), (".numpy.safetensors", load_numpy)):
        file = path.with_suffix(suffix)
        if file.exists():
            out.update(loader(str(file)))
    return out


def _feed(h: "hashlib._Hash", value: Any) -> None:
    h.update(type(value).__qualname__.encode())
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(value, torch.Generator):
        h.update(value.get_state().numpy().tobytes())
    elif isinstance(value, np.ndarray):
        h.update(f"{value.dtype}{value.shape}".encode() + np.ascontiguousarray(value).tobytes())
    elif isinstance(value, (list, tuple)):
        for v in value:
            _feed(h, v)
    elif isinstance(value, dict):
        for k in sorted(value, key=str):
            _feed(h, k)
            _feed(h, value[k])
    elif isinstance(value, functools.partial):
        _feed(h, (value.func, value.args, value.keywords))
    elif isinstance(value, torch.nn.Module):
        _feed(h, dict(value.state_dict()))
    elif callable(value):
        h.update(f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', '')}".encode())
    elif isinstance(value, (int, float, str, bool, bytes, type(None))):
        h.update(repr(value).encode())
    # any other object (a tokenizer) is named by its type alone; the other arguments tell cases apart


def fingerprint(args: tuple, kwargs: dict) -> str:
    """A content hash of a call's inputs (tensors, generators' states, numbers, partials)."""
    h = hashlib.sha256()
    _feed(h, (tuple(args), dict(kwargs)))
    return h.hexdigest()[:32]
