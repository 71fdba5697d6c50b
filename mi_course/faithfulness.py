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

from typing import TYPE_CHECKING, Callable, Literal

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
def ablated_losses(
    model: TransformerBridge, tokens: Int[Tensor, "batch pos"], reference: Int[Tensor, "batch pos"],
    keeps: Bool[Tensor, "copies layer head"], kind: Ablation, ablate: Callable = ablate_heads,
) -> Float[Tensor, "copies batch pos_minus_1"]:
    """Per-token losses with, in copy c of `tokens`, every head outside `keeps[c]` ablated by
    `ablate` (signature of `ablate_heads`): one forward pass for every copy. `reference` (same
    shape as `tokens`) supplies the mean and resample replacements."""
    n_layers = model.cfg.n_layers
    names = [z_hook_name(layer) for layer in range(n_layers)]
    _, cache = model.run_with_cache(reference.to(model.cfg.device), names_filter=lambda n: n in names)
    keeps = keeps.to(model.cfg.device)
    copies = keeps.shape[0]

    def hook_for(layer: int):
        def hook(z: Tensor, hook) -> Tensor:
            parts = z.unflatten(0, (copies, -1))
            return torch.stack([ablate(parts[c], keeps[c, layer], kind, cache[names[layer]])
                                for c in range(copies)]).flatten(0, 1)
        return hook

    repeated = tokens.to(model.cfg.device).repeat(copies, 1)
    logits = model.run_with_hooks(repeated, fwd_hooks=[(names[layer], hook_for(layer)) for layer in range(n_layers)])
    return per_token_loss(logits, repeated).unflatten(0, (copies, -1))


def circuit_losses(
    model: TransformerBridge, tokens: Int[Tensor, "batch pos"], reference: Int[Tensor, "batch pos"],
    circuit: Bool[Tensor, "layer head"], kind: Ablation, ablate: Callable = ablate_heads,
) -> Float[Tensor, "3 batch pos_minus_1"]:
    """Per-token losses of the full model, the circuit alone and the empty model (every head
    ablated), in one forward pass."""
    keeps = torch.stack([torch.ones_like(circuit), circuit, torch.zeros_like(circuit)])
    return ablated_losses(model, tokens, reference, keeps, kind, ablate)


def faithfulness(full: float | Tensor, circuit: float | Tensor, empty: float | Tensor) -> float:
    """(L_empty - L_circuit) / (L_empty - L_full): the share of the model's loss reduction over
    the empty model that the circuit alone achieves."""
    return float((empty - circuit) / (empty - full))


def smallest_faithful_circuit(
    model: TransformerBridge, tokens: Int[Tensor, "batch pos"], reference: Int[Tensor, "batch pos"],
    targets: Int[Tensor, "k"], threshold: float = 0.9,
) -> Bool[Tensor, "layer head"]:
    """A small set of heads whose zero-ablation faithfulness, on the mean loss at the per-token
    indices `targets`, is at least `threshold`: start from every head and keep removing the head
    whose removal leaves the highest faithfulness, while it stays at or above the threshold
    (greedy, so small rather than provably smallest). One forward pass per step."""
    circuit = torch.ones(model.cfg.n_layers, model.cfg.n_heads, dtype=torch.bool)
    while circuit.sum() > 1:
        heads = circuit.nonzero()
        candidates = circuit.repeat(len(heads), 1, 1)
        candidates[torch.arange(len(heads)), heads[:, 0], heads[:, 1]] = False
        keeps = torch.cat([torch.ones_like(circuit)[None], torch.zeros_like(circuit)[None], candidates])
        losses = ablated_losses(model, tokens, reference, keeps, "zero")[:, :, targets].mean((1, 2)).cpu()
        scores = (losses[1] - losses[2:]) / (losses[1] - losses[0])
        best = int(scores.argmax())
        if scores[best] < threshold:
            break
        circuit = candidates[best]
    return circuit
