"""Broken-model switches ("mutants"): does a notebook's claim fail when the model is broken?

An assert about a trained model is only a claim if it can fail. Setting `MI_COURSE_MUTANT`
before a notebook runs breaks every model it touches, and the slow mutant test counts which
assert cells fail:

- ``random-init``: `load_model` returns the same architecture with fresh random weights;
- ``earliest``: `load_model` returns the earliest training snapshot (random init when the
  model ships none);
- ``untrained``: training run inside a notebook returns its initial weights (functions that
  train call `skip_training()`), and `load_model` returns random weights.

Cells whose asserts are identities (softmax rows sum to 1, attributions add up) hold under
every mutant; they carry the cell tag ``sanity`` and are exempt.
"""

from __future__ import annotations

import os
from typing import Optional

MUTANT_ENV = "MI_COURSE_MUTANT"
KINDS = ("random-init", "earliest", "untrained")
SANITY_TAG = "sanity"


def active() -> Optional[str]:
    """The mutant in force, or None. An unknown name is an error, not a silent no-op."""
    kind = os.environ.get(MUTANT_ENV, "").strip()
    if not kind:
        return None
    if kind not in KINDS:
        raise ValueError(f"{MUTANT_ENV}={kind!r}; expected one of {', '.join(KINDS)}")
    return kind


def skip_training() -> bool:
    """True when in-notebook training should return its initial weights unchanged."""
    return active() == "untrained"
