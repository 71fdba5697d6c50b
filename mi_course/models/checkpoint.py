"""Saving and loading the course's own checkpoints.

TransformerLens 4 bridges have no `save_pretrained`, so a checkpoint is a directory we define:

    config.json          the bridge config (`cfg.to_dict()` without private keys; dtype as text)
    model.safetensors    the state dict
    tokenizer/           a Hugging Face tokenizer, loaded back by absolute path
    snapshots.safetensors   optional: the weights at several training steps, in float16
    metrics.json         optional: the metrics the training run measured at release

A GPT-2-architecture checkpoint (`save_gpt2_checkpoint`) holds a Hugging Face `GPT2Config` as
config.json (recognised by its `model_type`) and a `GPT2LMHeadModel` state dict in float16; it is booted with
`TransformerBridge.boot_transformers("gpt2", hf_model=...)`, which reads nothing from the network
when given the model and the tokenizer.

TransformerLens is imported only when a model is built, since importing it takes seconds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_DIR = "tokenizer"
SNAPSHOTS_FILE = "snapshots.safetensors"
METRICS_FILE = "metrics.json"
SNAPSHOT_DTYPE = torch.float16
SHIPPED_GPT2_DTYPE = torch.float16
# Runtime facts, not properties of the checkpoint: set again on every load.
_RUNTIME_KEYS = frozenset({"device", "n_devices"})


def _jsonable(value: Any) -> Any:
    """Config values as JSON: dtypes as their names, numpy scalars as Python numbers."""
    if isinstance(value, torch.dtype):
        return str(value).removeprefix("torch.")
    if hasattr(value, "item") and not isinstance(value, Tensor):
        return value.item()
    return value


def config_dict(model: TransformerBridge) -> dict[str, Any]:
    """The parts of `model.cfg` that define the checkpoint, ready for `json.dump`."""
    return {
        key: _jsonable(value)
        for key, value in model.cfg.to_dict().items()
        if not key.startswith("_") and key not in _RUNTIME_KEYS
    }


def save_checkpoint(
    model: TransformerBridge, directory: str | Path, metrics: Mapping[str, Any] | None = None
) -> Path:
    """Write config, weights, tokenizer (and `metrics`, if given) to `directory`; returns it."""
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_FILE).write_text(json.dumps(config_dict(model), indent=1, sort_keys=True) + "\n")
    if metrics is not None:
        (directory / METRICS_FILE).write_text(json.dumps(dict(metrics), indent=1) + "\n")
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, directory / WEIGHTS_FILE)
    model.tokenizer.save_pretrained(directory / TOKENIZER_DIR)
    return directory


def save_gpt2_checkpoint(
    model: Any, build_tokenizer: Any, directory: str | Path, metrics: Mapping[str, Any] | None = None
) -> Path:
    """Write a Hugging Face GPT-2 model's config, weights and tokenizer (and `metrics`)."""
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_FILE).write_text(json.dumps(model.config.to_diff_dict(), indent=1, sort_keys=True) + "\n")
    if metrics is not None:
        (directory / METRICS_FILE).write_text(json.dumps(dict(metrics), indent=1) + "\n")
    # float16 halves the size; on ioi-4l it moves logit differences in the third decimal and
    # no accuracy figure of the card. Loading casts back to float32.
    state = {name: tensor.detach().cpu().to(SHIPPED_GPT2_DTYPE).contiguous() for name, tensor in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)  # the token embedding, stored once
    save_file(state, directory / WEIGHTS_FILE)
    build_tokenizer(directory / TOKENIZER_DIR)
    return directory


def _is_gpt2(settings: Mapping[str, Any]) -> bool:
    return settings.get("model_type") == "gpt2"


def _gpt2_model(settings: Mapping[str, Any], state: Mapping[str, Tensor] | None, seed: int = 0) -> Any:
    """A `GPT2LMHeadModel` with `state` (or fresh weights seeded by `seed`), in float32."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config.from_dict(dict(settings))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
    if state is not None:
        state = {name: tensor.float() for name, tensor in state.items()}
        if config.tie_word_embeddings:
            state["lm_head.weight"] = state["transformer.wte.weight"]
        model.load_state_dict(state, strict=True)
    return model


def _read_tensors(path: Path, prefix: str = "") -> dict[str, Tensor]:
    """Tensors of a safetensors file whose names start with `prefix`, with the prefix removed."""
    with safe_open(path, framework="pt") as handle:
        names = [name for name in handle.keys() if name.startswith(prefix)]
        return {name[len(prefix) :]: handle.get_tensor(name) for name in names}


def boot_from_directory(
    directory: str | Path, state: Mapping[str, Tensor], device: str | torch.device = "cpu"
) -> TransformerBridge:
    """A bridge with the config and tokenizer in `directory` and the weights `state`, in eval mode."""
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoTokenizer

    directory = Path(directory).resolve()
    settings = json.loads((directory / CONFIG_FILE).read_text())
    tokenizer = AutoTokenizer.from_pretrained(str(directory / TOKENIZER_DIR))
    if _is_gpt2(settings):
        hf_model = _gpt2_model(settings, state)
        model = TransformerBridge.boot_transformers("gpt2", hf_model=hf_model, tokenizer=tokenizer, device=device)
        return model.eval()
    settings["dtype"] = getattr(torch, settings.get("dtype", "float32"))
    # The seeded initialisation is kept although `state` overwrites it: boot_native runs a
    # seeded init inside a forked RNG, whereas an unseeded build would consume the caller's RNG.
    model = TransformerBridge.boot_native(
        TransformerBridgeConfig.from_dict(settings), tokenizer=tokenizer, device=device
    )
    model.load_state_dict(dict(state), strict=True)
    return model.eval()


def load_random_init(directory: str | Path, device: str | torch.device = "cpu") -> TransformerBridge:
    """The architecture in `directory` with fresh, seeded random weights: a broken-model control."""
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    settings = json.loads((Path(directory) / CONFIG_FILE).read_text())
    if _is_gpt2(settings):
        return boot_from_directory(directory, _gpt2_model(settings, None, seed=1234).state_dict(), device)
    settings.update(dtype=getattr(torch, settings.get("dtype", "float32")), seed=1234)
    fresh = TransformerBridge.boot_native(TransformerBridgeConfig.from_dict(settings), device="cpu")
    return boot_from_directory(directory, fresh.state_dict(), device)


def load_checkpoint(directory: str | Path, device: str | torch.device = "cpu") -> TransformerBridge:
    """The model saved by `save_checkpoint` in `directory`, on `device`, in eval mode."""
    return boot_from_directory(directory, _read_tensors(Path(directory) / WEIGHTS_FILE), device)


def parameter_count(directory: str | Path) -> int:
    """Number of parameters in a saved checkpoint, read from the file header (no model built)."""
    with safe_open(Path(directory) / WEIGHTS_FILE, framework="pt") as handle:
        return sum(math.prod(handle.get_slice(name).get_shape()) for name in handle.keys())


def directory_size(directory: str | Path) -> int:
    """Bytes on disk of every file under `directory`."""
    return sum(path.stat().st_size for path in Path(directory).rglob("*") if path.is_file())


# --- training snapshots -----------------------------------------------------------------


def save_snapshots(snapshots: Mapping[int, Mapping[str, Tensor]], directory: str | Path) -> Path:
    """Store state dicts taken at several training steps in one file, in float16.

    float16 halves the size; attention patterns and losses computed from it differ from
    float32 in the third decimal, which is invisible in the plots the snapshots serve.
    """
    path = Path(directory) / SNAPSHOTS_FILE
    tensors = {
        f"step{step}/{name}": tensor.detach().cpu().to(SNAPSHOT_DTYPE).contiguous()
        for step, state in snapshots.items()
        for name, tensor in state.items()
    }
    save_file(tensors, path, metadata={"steps": ",".join(str(step) for step in sorted(snapshots))})
    return path


def snapshot_steps(directory: str | Path) -> list[int]:
    """The training steps at which `directory` holds snapshots (empty when it holds none)."""
    path = Path(directory) / SNAPSHOTS_FILE
    if not path.exists():
        return []
    with safe_open(path, framework="pt") as handle:
        return [int(step) for step in handle.metadata()["steps"].split(",")]


def load_snapshot(
    directory: str | Path, step: int, device: str | torch.device = "cpu"
) -> TransformerBridge:
    """The model as it was at training step `step` (one of `snapshot_steps(directory)`)."""
    steps = snapshot_steps(directory)
    if step not in steps:
        raise ValueError(f"no snapshot at step {step!r}; the snapshots are at steps {steps}")
    state = _read_tensors(Path(directory) / SNAPSHOTS_FILE, prefix=f"step{step}/")
    return boot_from_directory(directory, state, device)
