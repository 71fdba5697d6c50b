"""Circuit faithfulness, and how much it depends on what "removing" a head means.

A circuit's faithfulness compares three runs of the model on the same inputs: everything intact
(full), only the circuit's heads intact (circuit), nothing intact (empty). With a loss,

    faithfulness = (L_empty - L_circuit) / (L_empty - L_full),

1 when the circuit alone does all the model does, 0 when it does nothing. "Not intact" must be
chosen: zero-ablation (the head writes nothing), mean-ablation (it writes its average over a
reference batch) or resample-ablation (it writes what it wrote on another input). Miller et al.
(2024) show the score moves with that choice. Every run here is one batched forward pass.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from mi_course.circuits import per_token_loss, z_hook_name

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

Ablation = Literal["zero", "mean", "resample"]
ABLATIONS: tuple[Ablation, ...] = ("zero", "mean", "resample")


def ablate_heads(
    z: Float[Tensor, "batch pos head d_head"], keep: Bool[Tensor, "head"], kind: Ablation,
    source: Float[Tensor, "batch pos head d_head"],
) -> Float[Tensor, "batch pos head d_head"]:
    """Every head not in `keep` replaced; `source` is the same layer's z on a reference batch:
    zero -> 0, mean -> source averaged over the batch (per position and head),
    resample -> source row by row (row i of the batch gets source row i)."""
    if kind == "zero":
        replacement = torch.zeros_like(z)
    elif kind == "mean":
        replacement = source.mean(0, keepdim=True).expand_as(z)
    elif kind == "resample":
        replacement = source
    else:
        raise ValueError(f"kind must be one of {ABLATIONS}, got {kind!r}")
    return torch.where(keep[:, None], z, replacement.to(z.dtype))


@torch.no_grad()
def circuit_losses(
    model: TransformerBridge, tokens: Int[Tensor, "batch pos"], reference: Int[Tensor, "batch pos"],
    circuit: Bool[Tensor, "layer head"], kind: Ablation,
) -> Float[Tensor, "3 batch pos_minus_1"]:
    """Per-token losses of the full model, the circuit alone and the empty model (every head
    ablated), in one forward pass of three copies of `tokens`. `reference` (same shape) supplies
    the mean and resample replacements."""
    n_layers = model.cfg.n_layers
    names = [z_hook_name(layer) for layer in range(n_layers)]
    _, cache = model.run_with_cache(reference.to(model.cfg.device), names_filter=lambda n: n in names)
    keeps = torch.stack([torch.ones_like(circuit), circuit, torch.zeros_like(circuit)]).to(model.cfg.device)

    def hook_for(layer: int):
        def hook(z: Tensor, hook) -> Tensor:
            copies = z.unflatten(0, (3, -1))
            return torch.stack([ablate_heads(copies[c], keeps[c, layer], kind, cache[names[layer]])
                                for c in range(3)]).flatten(0, 1)
        return hook

    repeated = tokens.to(model.cfg.device).repeat(3, 1)
    logits = model.run_with_hooks(repeated, fwd_hooks=[(names[layer], hook_for(layer)) for layer in range(n_layers)])
    return per_token_loss(logits, repeated).unflatten(0, (3, -1))


def faithfulness(full: float | Tensor, circuit: float | Tensor, empty: float | Tensor) -> float:
    """(L_empty - L_circuit) / (L_empty - L_full): the share of the model's loss reduction over
    the empty model that the circuit alone achieves."""
    return float((empty - circuit) / (empty - full))
