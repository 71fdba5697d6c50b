"""Compare a learner's output with the expected one and say, in one line, what differs.

The order of the tests is the order a learner should fix things in: nothing returned, the
wrong kind of object, device, shape, dtype, NaN/inf, and only then the values.
"""

from __future__ import annotations

import dataclasses

import functools
import math
import numbers
from decimal import Decimal
from typing import Any, Optional

import numpy as np
import torch


def _is_number(x: Any) -> bool:
    """Any real number a learner may type or compute: int, float, Fraction, Decimal, numpy scalars."""
    return isinstance(x, (numbers.Real, Decimal)) and not isinstance(x, (bool, np.bool_))


def _is_count(x: Any) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, (bool, np.bool_))


def _as_tensor(x: Any) -> Optional[torch.Tensor]:
    """A 0-d/1-d tensor for numbers and numpy arrays, so they compare like tensors."""
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x)
    if isinstance(x, (bool, np.bool_)):
        return torch.tensor(bool(x))
    if _is_number(x):
        return torch.tensor(int(x) if _is_count(x) else float(x))
    return None


def describe(x: Any, max_values: int = 4) -> str:
    """A short description: type, shape, dtype and the first few values."""
    if isinstance(x, torch.Generator):
        return f"a torch.Generator (seed {x.initial_seed()})"
    if isinstance(x, functools.partial):
        inner = [describe(a, 2) for a in x.args] + [f"{k}={describe(v, 2)}" for k, v in x.keywords.items()]
        return f"{getattr(x.func, '__name__', 'a function')}({', '.join(inner)})"
    if isinstance(x, torch.Tensor):
        flat = x.detach().flatten()
        if x.device.type == "meta":
            shown = "values unavailable"
        else:
            vals = ", ".join(f"{v:.4g}" if x.is_floating_point() else str(v)
                             for v in flat[:max_values].cpu().tolist())
            more = ", …" if flat.numel() > max_values else ""
            shown = f"[{vals}{more}]"
        return f"Tensor{list(x.shape)} {str(x.dtype).replace('torch.', '')} on {x.device.type} {shown}"
    if isinstance(x, np.ndarray):
        return f"numpy array {list(x.shape)} {x.dtype}"
    if isinstance(x, (list, tuple)):
        inner = ", ".join(describe(v, 2) for v in list(x)[:3])
        return f"{type(x).__name__} of {len(x)}: ({inner}{', …' if len(x) > 3 else ''})"
    text = repr(x)
    if len(text) <= 60 or isinstance(x, (str, bytes)):
        return text if len(text) <= 60 else text[:57] + "..."
    try:  # an object with a long repr (a tokenizer, a model): its type, and its length if it has one
        return f"a {type(x).__name__} of length {len(x)}"
    except TypeError:
        return f"a {type(x).__name__}"


def max_abs_error(expected: Any, got: Any) -> Optional[float]:
    e, g = _as_tensor(expected), _as_tensor(got)
    if e is None or g is None or e.shape != g.shape or e.device != g.device:
        return None
    if e.device.type == "meta" or e.numel() == 0:
        return None
    return (e.double() - g.double()).abs().max().item()


def compare(expected: Any, got: Any, rtol: float, atol: float, check_dtype: bool = True,
            where: str = "the output", computed: bool = True) -> Optional[str]:
    """None when `got` matches `expected`; else one line saying what differs.

    `computed=False` is for a value the learner typed in: its messages say what was expected
    instead of pointing at code ("did you forget to return", "a division by zero").
    """
    if got is None and expected is not None:
        if computed:
            return f"{where} is None: did you forget to `return` it?"
        return f"{where} is None; expected {_kind(expected)}"
    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)):
            return f"{where} should be a {type(expected).__name__} of {len(expected)}, got {describe(got)}"
        if len(got) != len(expected):
            return f"{where} has {len(got)} elements, expected {len(expected)}"
        for i, (e, g) in enumerate(zip(expected, got)):
            reason = compare(e, g, rtol, atol, check_dtype, f"element {i} of {where}", computed)
            if reason:
                return reason
        return None
    if isinstance(expected, dict):
        if not isinstance(got, dict) or set(got) != set(expected):
            return f"{where} should be a dict with keys {sorted(expected)}, got {describe(got)}"
        for k in expected:
            reason = compare(expected[k], got[k], rtol, atol, check_dtype, f"{where}[{k!r}]", computed)
            if reason:
                return reason
        return None
    if dataclasses.is_dataclass(expected) and not isinstance(expected, type):
        if type(got) is not type(expected):
            return f"{where} should be a {type(expected).__name__}, got {describe(got)}"
        for f in dataclasses.fields(expected):
            reason = compare(getattr(expected, f.name), getattr(got, f.name), rtol, atol, check_dtype,
                             f"{where}.{f.name}", computed)
            if reason:
                return reason
        return None
    if isinstance(expected, torch.Tensor):
        return _compare_tensor(expected, got, rtol, atol, check_dtype, where, computed)
    if _is_number(expected) or isinstance(expected, (bool, np.bool_)):
        return _compare_number(expected, got, rtol, atol, where, computed)
    if isinstance(expected, str):
        if not isinstance(got, str):
            return f"{where} should be a string, got {describe(got)}"
        if got.strip().lower() != expected.strip().lower():
            return f"{where} is {got!r}, which is not the right answer"
        return None
    if got != expected:
        return f"{where} is {describe(got)}, which is not the right answer"
    return None


def _kind(expected: Any) -> str:
    """What kind of answer `expected` is, in words, without giving its value away."""
    if isinstance(expected, (bool, np.bool_)):
        return "True or False"
    if _is_count(expected):
        return "a whole number"
    if _is_number(expected):
        return "a number"
    if isinstance(expected, torch.Tensor):
        return f"a torch.Tensor of shape {tuple(expected.shape)}"
    return f"a {type(expected).__name__}"


def _scalar(x: Any) -> Any:
    """A one-element tensor or array, or a numpy scalar, as a plain Python number."""
    if isinstance(x, torch.Tensor) and x.numel() == 1 and x.device.type != "meta":
        return x.detach().cpu().item()
    if isinstance(x, (np.ndarray, np.generic)) and x.size == 1:
        return x.item()
    return x


def _compare_number(expected: Any, got: Any, rtol: float, atol: float, where: str,
                    computed: bool) -> Optional[str]:
    got = _scalar(got)
    if isinstance(expected, (bool, np.bool_)):
        if not isinstance(got, bool):
            return f"{where} should be True or False, got {describe(got)}"
        return None if got == bool(expected) else f"{where} is {got}, which is not the right answer"
    if not _is_number(got):
        return f"{where} should be {_kind(expected)}, got {describe(got)}"
    value = float(got)
    if math.isnan(value) or math.isinf(value):
        if computed:
            return f"{where} is {value}: look for a division by zero or a log of zero"
        return f"{where} is {value}; expected a finite number"
    if _is_count(expected):
        if got != int(value):
            return f"{where} is {got}; expected a whole number (a count), exactly"
        return None if int(value) == int(expected) else f"{where} is {int(value)}, which is not the right answer"
    if not math.isclose(value, float(expected), rel_tol=rtol, abs_tol=atol):
        return f"{where} is {value:.6g}, which is not the right answer"
    return None


def _values_match(e: torch.Tensor, g: torch.Tensor, rtol: float, atol: float) -> bool:
    """Equal within tolerance (floats) or exactly (integers and booleans)."""
    e, g = e.detach(), g.detach()
    if e.is_floating_point() or g.is_floating_point() or e.is_complex() or g.is_complex():
        return torch.allclose(g.cpu().double(), e.cpu().double(), rtol=rtol, atol=atol, equal_nan=True)
    return torch.equal(g.cpu().to(e.dtype), e.cpu())


def _name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _compare_tensor(expected: torch.Tensor, got: Any, rtol: float, atol: float,
                    check_dtype: bool, where: str, computed: bool) -> Optional[str]:
    if not isinstance(got, torch.Tensor):
        if isinstance(got, np.ndarray) or _is_number(got):
            return f"{where} is a {type(got).__name__}; return a torch.Tensor (torch.tensor(...) or keep the computation in torch)"
        return f"{where} should be a torch.Tensor, got {describe(got)}"
    if got.device.type != expected.device.type:
        return (f"{where} is on device '{got.device.type}', expected '{expected.device.type}': "
                "create new tensors on the input's device (device=x.device)")
    if got.shape != expected.shape:
        return f"{where} has shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
    if check_dtype and got.dtype != expected.dtype:
        wrong = f"{where} has dtype {_name(got.dtype)}, expected {_name(expected.dtype)}"
        if _values_match(expected, got, rtol, atol):
            return f"{wrong}: the values are right, only the dtype differs (use .to(torch.{_name(expected.dtype)}))"
        return f"{wrong}, and the values differ too"
    if got.is_floating_point() or got.is_complex():
        bad = ~torch.isfinite(got.detach())
        if bad.any() and not (~torch.isfinite(expected)).any():
            kind = "NaN" if torch.isnan(got.detach()).any() else "inf"
            cause = ("look for a division by zero, a log of zero or an overflow" if computed
                     else "expected finite values")
            return f"{where} contains {kind} ({int(bad.sum())} of {got.numel()} entries): {cause}"
    if not _values_match(expected, got, rtol, atol):
        err = max_abs_error(expected, got)
        return f"{where} has the right shape but wrong values (max abs error {err:.3g})"
    return None
