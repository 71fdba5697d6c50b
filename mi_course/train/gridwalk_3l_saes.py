"""Train Chapter 2's SAEs on `gridwalk-3l`'s residual stream after block 2: `python -m mi_course.train
gridwalk-3l-saes`.

The site is `blocks.1.hook_resid_post`, where a linear probe reads the current cell at 0.98 (the
model card). Inputs are the activations at every position but `<bos>`, scaled so that their mean
squared norm is d_model (as SAELens normalises), and the scale is folded back into the saved
weights, so the shipped SAEs read and write raw activations. Three widths at one L1 coefficient
serve the feature-splitting section; `main` is the chapter's SAE.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from mi_course import sae as sae_lib
from mi_course.data import grid_walks as gw
from mi_course.sae_gridwalk import SAES_CONFIG, SAES_FILE, site_acts, splice_losses
from mi_course.train.loop import check_steps

NAME = "gridwalk-3l-saes"
SITE = "blocks.1.hook_resid_post"
WIDTHS = {"w8": 8, "w32": 32, "main": 128}
L1_COEFF = 1.0
DEFAULT_STEPS = 3000
BATCH, LR, RESAMPLE_EVERY = 512, 2e-3, 500
TRAIN_WALKS, EVAL_WALKS, EVAL_SEED = 2000, 300, 4321
TARGETS_MIN = {"main_explained_variance": 0.9, "main_loss_recovered": 0.9}
TARGETS_MAX = {"main_dead_fraction": 0.25, "main_l0": 12.0}


def fold_scale(sae: sae_lib.SAE, scale: float) -> sae_lib.SAE:
    """The same SAE for raw inputs x = scale * x_normalised."""
    return sae_lib.SAE(sae.W_enc / scale, sae.b_enc, sae.W_dec * scale, sae.b_dec * scale, sae.k)


def evaluate(model, saes: dict[str, sae_lib.SAE]) -> dict[str, float]:
    """L0, explained variance, dead fraction and CE loss recovered of each SAE on fresh walks."""
    walks = gw.grid_walks(EVAL_WALKS, seed=EVAL_SEED)
    acts = site_acts(model, walks.tokens, SITE)[walks.cell != gw.IGNORE][:, None]
    metrics = {}
    for name, sae in saes.items():
        latents, recon = sae(acts)
        l0, dead = sae_lib.l0_and_dead(latents)
        metrics[f"{name}_l0"] = round(l0.item(), 3)
        metrics[f"{name}_explained_variance"] = round(sae_lib.explained_variance(acts, recon).item(), 4)
        metrics[f"{name}_dead_fraction"] = round(dead.item(), 4)
        metrics[f"{name}_loss_recovered"] = round(sae_lib.loss_recovered(*splice_losses(model, walks, SITE, sae)), 4)
    return metrics


def missed_targets(metrics: dict) -> list[str]:
    missed = [f"{key} = {metrics[key]} < {bound}" for key, bound in TARGETS_MIN.items() if metrics[key] < bound]
    return missed + [f"{key} = {metrics[key]} > {bound}" for key, bound in TARGETS_MAX.items() if metrics[key] > bound]


def train(seed: int = 0, out_dir: str | Path | None = None, steps: int | None = None, progress: bool = True) -> dict:
    """Train every width from scratch on activations of `TRAIN_WALKS` walks; save to `out_dir`."""
    from mi_course.models import load_model

    steps = check_steps(DEFAULT_STEPS if steps is None else steps)
    model = load_model("gridwalk-3l", device="cpu")
    walks = gw.grid_walks(TRAIN_WALKS, seed=seed + 100)
    acts = site_acts(model, walks.tokens, SITE)[walks.cell != gw.IGNORE]
    scale = (acts.pow(2).sum(-1).mean() / acts.shape[-1]).sqrt().item()
    normalised = acts / scale
    generator = torch.Generator().manual_seed(seed)

    def batches() -> torch.Tensor:
        return normalised[torch.randint(len(normalised), (BATCH,), generator=generator)][:, None]

    saes, clock = {}, time.perf_counter()
    for offset, (name, width) in enumerate(WIDTHS.items()):
        start = sae_lib.init_sae(1, acts.shape[-1], width, torch.Generator().manual_seed(seed * 10 + offset),
                                 b_dec=normalised.mean(0))
        trained, _ = sae_lib.train_sae(start, batches, steps, L1_COEFF, lr=LR, resample_every=RESAMPLE_EVERY,
                                       seed=seed, progress=progress)
        saes[name] = fold_scale(trained, scale)
    seconds = round(time.perf_counter() - clock, 1)
    metrics = {"seed": seed, "steps": steps, "site": SITE, "l1_coeff": L1_COEFF, "input_scale": round(scale, 4)}
    metrics |= evaluate(model, saes) | {"train_seconds": seconds}
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {f"{name}.{part}": value.contiguous()
                   for name, sae in saes.items() for part, value in sae.tensors().items()}
        save_file(tensors, out / SAES_FILE)
        config = {"site": SITE, "model": "gridwalk-3l", "l1_coeff": L1_COEFF, "input_scale": scale,
                  "saes": {name: {"d_sae": width} for name, width in WIDTHS.items()}}
        (out / SAES_CONFIG).write_text(json.dumps(config, indent=1) + "\n")
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    return metrics
