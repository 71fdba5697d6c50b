"""Training scripts that reproduce the shipped checkpoints: `python -m mi_course.train NAME`.

Each shipped model `name` has a module `mi_course.train.<name with - as _>` exposing
`train(seed, out_dir, steps, progress) -> metrics`, `DEFAULT_STEPS`, and
`missed_targets(metrics) -> list[str]` (the release criteria a run fails, in words).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from mi_course.models.registry import MODELS, get_spec


def trainable_models() -> list[str]:
    """Names of the models this package can train."""
    return [name for name, spec in MODELS.items() if spec.shipped]


def training_module(name: str) -> ModuleType:
    """The module that trains shipped model `name`."""
    spec = get_spec(name)
    if not spec.shipped:
        raise ValueError(f"{name!r} is a hub model; the course trains only {', '.join(trainable_models())}")
    return importlib.import_module(spec.training_module)
