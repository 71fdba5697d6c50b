"""Seeded exercises: the same seed must give the same output, and another seed another output.

An answer that draws from the global RNG, or always seeds with 0, gives a valid output on
every single call; only calling it again tells. For an exercise with `seed_arg`, grading calls
the answer twice more with the case's seed (fresh copies of every input, the global torch,
numpy and `random` RNGs set to different states each time) and with other seeds.
"""

from __future__ import annotations

import copy
import inspect
import random
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch

from mi_course.grading import sandbox
from mi_course.grading.compare import compare, describe
from mi_course.grading.exercise import Case, Exercise


@contextmanager
def global_rng(seed: int) -> Iterator[None]:
    """Run with torch's, numpy's and `random`'s global RNGs seeded with `seed`; restore them after."""
    states = torch.get_rng_state(), np.random.get_state(), random.getstate()
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    try:
        yield
    finally:
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])


OTHER_SEEDS = 3
"""How many other seeds may be tried: a right answer on a tiny case (2 tokens of 10) can repeat
its output for one other seed by chance (1 in 90), but not for three (1 in 700,000)."""


def other_seeds(seed: Any) -> list[Any]:
    """Different seeds of the same kind: ints, or Generators on the same device."""
    if isinstance(seed, torch.Generator):
        return [torch.Generator(device=seed.device).manual_seed(seed.initial_seed() + k)
                for k in range(1, OTHER_SEEDS + 1)]
    return [seed + k for k in range(1, OTHER_SEEDS + 1)]


def _remedy(arg: str, seed: Any) -> str:
    if isinstance(seed, torch.Generator):
        return f"draw every random number from `{arg}`"
    return f"draw every random number from a torch.Generator seeded with `{arg}`"


def with_seed(ex: Exercise, case: Case, seed: Any) -> Case:
    """A copy of `case` whose `seed_arg` is `seed`, wherever the case passes it (by position or keyword)."""
    bound = inspect.signature(ex.reference).bind(*case.args, **case.kwargs)
    bound.arguments[ex.seed_arg] = seed
    return Case(bound.args, bound.kwargs, case.label)


def _seed_of(ex: Exercise, case: Case) -> Any:
    return inspect.signature(ex.reference).bind(*case.args, **case.kwargs).arguments[ex.seed_arg]


def _reference(ex: Exercise, case: Case) -> Any:
    fresh = copy.deepcopy(case)
    return ex.reference(*fresh.args, **fresh.kwargs)


def _run(ex: Exercise, fn: Callable, case: Case, rng_seed: int) -> tuple[Any, Optional[str]]:
    fresh = copy.deepcopy(case)
    with global_rng(rng_seed):
        out, failure = sandbox.call(fn, fresh.args, fresh.kwargs, ex.timeout_s)
    return out, None if failure is None else f"your function {failure.message}."


def _same(ex: Exercise, a: Any, b: Any) -> bool:
    return compare(a, b, ex.rtol, ex.atol, ex.check_dtype) is None


def seed_failure(ex: Exercise, fn: Callable, case: Case, expected: Any) -> Optional[str]:
    """None when `fn` repeats itself for the case's seed and changes with some other seed for
    which the reference's output changes; else why not. `expected` is the reference's output on `case`."""
    arg, seed = ex.seed_arg, _seed_of(ex, case)
    first, failure = _run(ex, fn, case, rng_seed=1)
    if failure is None:
        second, failure = _run(ex, fn, case, rng_seed=2)
    if failure is not None:
        return failure
    if not _same(ex, first, second):
        return (f"it gives different outputs for the same seed (`{arg}` = {describe(seed)}): "
                f"does it use the global RNG instead of `{arg}`?")
    ignored = None
    for other_seed in other_seeds(seed):
        other_case = with_seed(ex, case, other_seed)
        if _same(ex, expected, _reference(ex, other_case)):
            continue  # the right output does not change with this seed either
        other, failure = _run(ex, fn, other_case, rng_seed=1)
        if failure is not None:
            return failure
        if not _same(ex, first, other):
            return None
        ignored = ignored or (f"it ignores the seed: `{arg}` = {describe(seed)} and `{arg}` = "
                              f"{describe(other_seed)} give the same output; {_remedy(arg, seed)}.")
    return ignored
