"""mi-course: the helper package behind the mechanistic-interpretability notebooks.

The public surface is small: `setup`, `get_device`, `check`, `load_model`, `list_models`.
Model loading imports TransformerLens, which is slow, so it is imported on first use.
"""

from typing import Any

from mi_course.grading import check
from mi_course.runtime import get_device, setup

__all__ = ["check", "get_device", "list_models", "load_model", "setup"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in ("load_model", "list_models"):
        from mi_course import models

        return getattr(models, name)
    raise AttributeError(f"module 'mi_course' has no attribute {name!r}")
