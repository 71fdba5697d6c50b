"""Compare a learner's output with the expected one and say, in one line, what differs.

The order of the tests is the order a learner should fix things in: nothing returned, the
wrong kind of object, device, shape, dtype, NaN/inf, and only then the values.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import torch


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _as_tensor(x: Any) -> Optional[torch.Tensor]:
    """A 0-d/1-d tensor for numbers and numpy arrays, so they compare like tensors."""
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x)
    if _is_number(x) or isinstance(x, bool):
        return torch.tensor(x)
    return None


def describe(x: Any, max_values: int = 4) -> str:
    """A short description: type, shape, dtype and the first few values."""
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
    return text if len(text) <= 60 else text[:57] + "..."


def max_abs_error(expected: Any, got: Any) -> Optional[float]:
    e, g = _as_tensor(expected), _as_tensor(got)
    if e is None or g is None or e.shape != g.shape or e.device != g.device:
        return None
    if e.device.type == "meta" or e.numel() == 0:
        return None
    return (e.double() - g.double()).abs().max().item()


def compare(expected: Any, got: Any, rtol: float, atol: float,
            check_dtype: bool = True, where: str = "the output") -> Optional[str]:
    """None when `got` matches `expected`; else one line saying what differs."""
    if got is None and expected is not None:
        return f"{where} is None: did you forget to `return` it?"
    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)):
            return f"{where} should be a {type(expected).__name__} of {len(expected)}, got {describe(got)}"
        if len(got) != len(expected):
            return f"{where} has {len(got)} elements, expected {len(expected)}"
        for i, (e, g) in enumerate(zip(expected, got)):
            reason = compare(e, g, rtol, atol, check_dtype, where=f"element {i} of {where}")
            if reason:
                return reason
        return None
    if isinstance(expected, dict):
        if not isinstance(got, dict) or set(got) != set(expected):
            return f"{where} should be a dict with keys {sorted(expected)}, got {describe(got)}"
        for k in expected:
            reason = compare(expected[k], got[k], rtol, atol, check_dtype, where=f"{where}[{k!r}]")
            if reason:
                return reason
        return None
    if isinstance(expected, torch.Tensor):
        return _compare_tensor(expected, got, rtol, atol, check_dtype, where)
    if _is_number(expected) or isinstance(expected, bool):
        return _compare_number(expected, got, rtol, atol, where)
    if isinstance(expected, str):
        if not isinstance(got, str):
            return f"{where} should be a string, got {describe(got)}"
        if got.strip().lower() != expected.strip().lower():
            return f"{where} is {got!r}, which is not the right answer"
        return None
    if got != expected:
        return f"{where} is {describe(got)}, which is not the right answer"
    return None


def _compare_number(expected: Any, got: Any, rtol: float, atol: float, where: str) -> Optional[str]:
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.detach().cpu().item()
    if isinstance(got, np.ndarray) and got.size == 1:
        got = got.item()
    if isinstance(expected, bool):
        if not isinstance(got, (bool, np.bool_)):
            return f"{where} should be True or False, got {describe(got)}"
        return None if bool(got) == expected else f"{where} is {got}, which is not the right answer"
    if not (_is_number(got)):
        return f"{where} should be a number, got {describe(got)}"
    if math.isnan(got) or math.isinf(got):
        return f"{where} is {got}: look for a division by zero or a log of zero"
    if not math.isclose(float(got), float(expected), rel_tol=rtol, abs_tol=atol):
        return f"{where} is {got:.6g}, which is not the right answer"
    return None


def _compare_tensor(expected: torch.Tensor, got: Any, rtol: float, atol: float,
                    check_dtype: bool, where: str) -> Optional[str]:
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
        return (f"{where} has dtype {str(got.dtype).replace('torch.', '')}, expected "
                f"{str(expected.dtype).replace('torch.', '')}")
    if got.is_floating_point() or got.is_complex():
        bad = ~torch.isfinite(got.detach())
        if bad.any() and not (~torch.isfinite(expected)).any():
            kind = "NaN" if torch.isnan(got.detach()).any() else "inf"
            return (f"{where} contains {kind} ({int(bad.sum())} of {got.numel()} entries): "
                    "look for a division by zero, a log of zero or an overflow")
    e = expected.detach()
    g = got.detach().to(e.dtype) if (e.is_floating_point() or not got.is_floating_point()) else got.detach()
    if e.is_floating_point() or g.is_floating_point():
        ok = torch.allclose(g.double(), e.double(), rtol=rtol, atol=atol, equal_nan=True)
    else:
        ok = torch.equal(g, e)
    if not ok:
        err = max_abs_error(e, g)
        return f"{where} has the right shape but wrong values (max abs error {err:.3g})"
    return None
