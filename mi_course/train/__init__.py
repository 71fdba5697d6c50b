"""Training scripts that reproduce the shipped checkpoints: `python -m mi_course.train NAME`.

Each shipped model `name` has a module `mi_course.train.<name with - as _>` exposing
`train(seed, out_dir, steps, progress) -> metrics`, `DEFAULT_STEPS`, and
`missed_targets(metrics) -> list[str]` (the release criteria a run fails, in words).
Artefacts trained on top of a shipped model (a chapter's SAEs) are trained the same way; they
are listed in ARTEFACTS, since they are not models `load_model` returns.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from mi_course.models.registry import MODELS, get_spec


# Name -> training module of each shipped artefact that is not a model.
ARTEFACTS = {"gridwalk-3l-saes": "mi_course.train.gridwalk_3l_saes"}


def trainable_models() -> list[str]:
    """Names of the models (and other shipped artefacts) this package can train."""
    return [name for name, spec in MODELS.items() if spec.shipped] + list(ARTEFACTS)


def training_module(name: str) -> ModuleType:
    """The module that trains shipped model (or artefact) `name`."""
    if name in ARTEFACTS:
        return importlib.import_module(ARTEFACTS[name])
    spec = get_spec(name)
    if not spec.shipped:
        raise ValueError(f"{name!r} is a hub model; the course trains only {', '.join(trainable_models())}")
    return importlib.import_module(spec.training_module)
