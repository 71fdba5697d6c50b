"""Load the course's models by name: the small ones shipped with the package, and hub models.

`load_model("attn-only-2l")` works offline; `list_models()` shows every model, its size and
whether it can be loaded here and now.
"""

from mi_course.models.hub import ModelUnavailableError
from mi_course.models.registry import ModelInfo, list_models, load_model, snapshot_steps

__all__ = ["ModelInfo", "ModelUnavailableError", "list_models", "load_model", "snapshot_steps"]
