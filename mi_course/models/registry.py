"""Every model the course can load, by name.

A shipped model is trained by `mi_course/train/<name with _ for ->.py` and saved under
`mi_course/weights/<name>/`; adding one means writing that training module and one
`_shipped(...)` entry below. Hub models load only when online or cached (see `hub.py`).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NamedTuple

import torch

from mi_course.models import checkpoint, hub
from mi_course.models.hub import ModelUnavailableError

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

Loader = Callable[[torch.device], "TransformerBridge"]


@dataclass(frozen=True)
class ModelSpec:
    """What the course knows about a model before loading it.

    Shipped models have `weights_dir`; hub models have `repo` and a stated `parameters`
    count, since their weights may not be on disk to count.
    """

    name: str
    description: str
    training_data: str
    chapter: str  # the notebook that uses it; "" for a model no chapter uses any more
    loader: Loader
    weights_dir: Path | None = None
    repo: str | None = None
    parameters: int | None = None

    @property
    def shipped(self) -> bool:
        return self.weights_dir is not None

    @property
    def training_module(self) -> str | None:
        """The module whose `train(...)` reproduces a shipped checkpoint."""
        return f"mi_course.train.{self.name.replace('-', '_')}" if self.shipped else None


def _shipped(name: str, description: str, training_data: str, chapter: str) -> ModelSpec:
    directory = checkpoint.WEIGHTS_DIR / name
    return ModelSpec(
        name, description, training_data, chapter,
        loader=partial(checkpoint.load_checkpoint, directory), weights_dir=directory,
    )


def _hub(
    name: str, repo: str, description: str, training_data: str, chapter: str, parameters: int
) -> ModelSpec:
    return ModelSpec(
        name, description, training_data, chapter,
        loader=partial(hub.load_hub_model, repo), repo=repo, parameters=parameters,
    )


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _shipped(
            "attn-only-2l",
            description="2-layer attention-only transformer (d_model 64, 4 heads per layer, no "
            "LayerNorm) with a previous-token head in layer 0 and induction heads in layer 1",
            training_data="synthetic: 60 random tokens from 298 made-up words; 75% of rows repeat "
            "a 10-25 token segment at a random position",
            chapter="03_induction_heads",
        ),
        _hub(
            "gpt2-small",
            repo="gpt2",
            description="GPT-2 small (Radford et al. 2019): 12 layers, d_model 768, 12 heads; "
            "needs the Hugging Face Hub or its local cache",
            training_data="WebText (OpenAI), about 40 GB of web pages",
            chapter="06_ioi_circuit",
            parameters=124_439_808,
        ),
        _shipped(
            "ioi-3l",
            description="3-layer attention-only transformer (d_model 64, 4 heads per layer, "
            "LayerNorm) that predicts the indirect object in IOI sentences; superseded by ioi-4l (no "
            "chapter uses it: it fails on sentence structures outside its 16 templates)",
            training_data="synthetic word-level corpus (151 words): IOI sentences from 16 templates, "
            "'ABC' sentences ending 'them', repeated random word strings, narrative sentences",
            chapter="",  # superseded by ioi-4l in Chapter 6; its language module is ioi-4l's base
        ),
        _shipped(
            "ioi-4l",
            description="4-layer GPT-2-architecture transformer (d_model 128, 8 heads, MLPs) that "
            "predicts the indirect object in sentences from a grammar, including sentence structures "
            "it never saw; booted with TransformerBridge.boot_transformers from local files; seed 0 "
            "of a recipe that met its release criteria on 1 of 3 seeds (model card)",
            training_data="synthetic word-level language (146 words): IOI sentences from a grammar "
            "(intro, optional middle, final clause; 100 of 240 structures and 10% of name pairs held "
            "out), narrative sentences, random word strings with a repeated segment",
            chapter="06_ioi_circuit",
        ),
        _shipped(
            "gridwalk-3l",
            description="3-layer transformer (d_model 64, 4 heads, MLPs, LayerNorm) that predicts "
            "the next move of a walk on a 5x5 grid; the current cell is linearly decodable after "
            "block 1, step parity is decodable but unused",
            training_data="synthetic: legal random walks on a 5x5 grid, a start-cell token then 30 "
            "moves (U D L R) drawn uniformly from the legal ones",
            chapter="04_probing",
        ),
        _shipped(
            "facts-4l",
            description="4-layer transformer (d_model 64, 4 heads, MLPs, LayerNorm) that recalls "
            "one-token objects of facts about 2-3 token subjects; causal tracing finds the layer-0 "
            "MLP at the last subject token and later layers at the final token (model card)",
            training_data="synthetic: 1,500 facts (300 people x city, job, sport, language, pet) "
            "stated in 7 phrasings per relation, plainly and after a filler; 1 phrasing per "
            "relation held out",
            chapter="05_activation_patching",
        ),
    )
}


def get_spec(name: str) -> ModelSpec:
    """The spec of model `name`, or a ValueError that lists the names (and a near miss)."""
    if not isinstance(name, str) or name not in MODELS:
        close = difflib.get_close_matches(str(name), MODELS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown model {name!r}.{hint} Known models: {', '.join(MODELS)}.")
    return MODELS[name]


def _offline_alternatives(chapter: str) -> str:
    """Shipped models, those serving `chapter` first: what to load instead when offline."""
    shipped = [spec for spec in MODELS.values() if spec.shipped and spec.chapter]
    shipped.sort(key=lambda spec: spec.chapter != chapter)
    return ", ".join(f"load_model({spec.name!r}) for {spec.chapter}" for spec in shipped)


def load_model(
    name: str, device: str | torch.device | None = None, step: int | None = None
) -> TransformerBridge:
    """Model `name` as a TransformerBridge in eval mode, tokenizer attached, on `device`.

    `device` defaults to `mi_course.get_device()`. `step` picks a training snapshot of a
    shipped model (`snapshot_steps(name)` lists them) instead of the final weights.
    """
    from mi_course.runtime import get_device

    spec = get_spec(name)
    device = torch.device(device) if device is not None else get_device()
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but torch sees no CUDA device; leave device out to use the default")
    if spec.shipped and not (spec.weights_dir / checkpoint.WEIGHTS_FILE).exists():
        raise ModelUnavailableError(
            f"{name!r} has no weights in {spec.weights_dir}; create them with "
            f"`python -m mi_course.train {name}`."
        )
    broken = _mutant_model(spec, device)
    if broken is not None:
        return broken
    if step is not None:
        if not spec.shipped:
            raise ValueError(f"{name!r} is a hub model; only shipped models have training snapshots")
        return checkpoint.load_snapshot(spec.weights_dir, step, device)
    try:
        return spec.loader(device)
    except ModelUnavailableError as error:
        raise ModelUnavailableError(
            f"{name} cannot be loaded: {error} Offline, use a model shipped with the course: "
            f"{_offline_alternatives(spec.chapter)}."
        ) from None


def _mutant_model(spec: ModelSpec, device: torch.device) -> TransformerBridge | None:
    """The broken model `MI_COURSE_MUTANT` asks for (see `mi_course.mutants`), else None."""
    from mi_course import mutants

    kind = mutants.active()
    if kind is None or not spec.shipped:
        return None
    steps = checkpoint.snapshot_steps(spec.weights_dir)
    if kind == "earliest" and steps:
        return checkpoint.load_snapshot(spec.weights_dir, min(steps), device)
    return checkpoint.load_random_init(spec.weights_dir, device)


def snapshot_steps(name: str) -> list[int]:
    """Training steps at which shipped model `name` has snapshots, for `load_model(name, step=...)`."""
    spec = get_spec(name)
    return checkpoint.snapshot_steps(spec.weights_dir) if spec.shipped else []


class ModelInfo(NamedTuple):
    """One row of `list_models()`. `size_mb` is on disk (None for hub models not yet cached);
    `chapter` is the stem of the chapter notebook the model serves."""

    name: str
    chapter: str
    parameters: int | None
    size_mb: float | None
    training_data: str
    available: bool
    source: str
    description: str


def _info(spec: ModelSpec) -> ModelInfo:
    if spec.shipped:
        present = (spec.weights_dir / checkpoint.WEIGHTS_FILE).exists()
        parameters = checkpoint.parameter_count(spec.weights_dir) if present else None
        size_mb = checkpoint.directory_size(spec.weights_dir) / 1e6 if present else None
        source, available = "shipped", present
    else:
        state = hub.availability(spec.repo)
        cached = hub.cached_bytes(spec.repo)
        parameters, size_mb = spec.parameters, None if cached is None else cached / 1e6
        source, available = f"hub ({state})", state in ("cached", "online")
    return ModelInfo(
        spec.name, spec.chapter, parameters, size_mb, spec.training_data, available, source,
        spec.description,
    )


def list_models() -> list[ModelInfo]:
    """One row per model: name, chapter, parameters, size on disk, data, and whether it loads now."""
    return [_info(spec) for spec in MODELS.values()]
