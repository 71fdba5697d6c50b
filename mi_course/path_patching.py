"""Path patching (Wang et al. 2023): how much of a head's effect flows along one path?

Activation patching (Chapter 5) asks what a head does through *every* route downstream of it.
Path patching isolates a route. Run the model on the clean prompts and change one *sender*
head's output to its value on the corrupted prompts while freezing every other head at its
clean output, so the change reaches later layers only through the residual stream (and the
MLPs, which recompute, unless `freeze_mlps`). Then either read the logits of that run (the
path sender -> logits), or record the inputs of chosen *receiver* heads and patch only those
into a fresh clean run, letting everything after them recompute (the path sender -> receivers
-> logits).

Every sender is one copy of the batch, stacked along the batch axis: two forward passes for
all senders together. With `freeze_mlps=True` and the two runs swapped (the corrupted run
receives clean senders), a single receiver's entry is the edge intervention that
`transformer_lens.patching.get_act_patch_direct_path` computes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from mi_course.patching import Metric, cache_activations, head_hook_name

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

ReceiverInput = Literal["q", "k", "v"]


def head_mask(heads: list[tuple[int, int]] | Int[Tensor, "n 2"], n_layers: int, n_heads: int) -> Bool[Tensor, "layer head"]:
    """A boolean [layer, head] mask with True at each (layer, head) of `heads`."""
    mask = torch.zeros(n_layers, n_heads, dtype=torch.bool)
    for layer, head in heads:
        mask[layer, head] = True
    return mask


def _replace_heads(run: Tensor, source: Tensor, mask: Bool[Tensor, "variant head"]) -> Tensor:
    """`run` ([batch, pos, head, d]) repeated per variant, with the masked heads taken from `source`."""
    return torch.where(mask[:, None, None, :, None], source[None], run[None]).flatten(0, 1)


@torch.no_grad()
def path_patch(
    model: TransformerBridge,
    clean_tokens: Int[Tensor, "batch pos"],
    corrupt_tokens: Int[Tensor, "batch pos"],
    metric: Metric,
    senders: Bool[Tensor, "sender layer head"],
    receivers: Bool[Tensor, "layer head"] | None = None,
    receiver_input: ReceiverInput = "q",
    freeze_mlps: bool = False,
) -> Float[Tensor, " sender"]:
    """The metric after patching the path from each sender set to the receivers (or the logits).

    Sender set i (`senders[i]`, usually one head) takes its z from the corrupted run; every other
    head's z is frozen at its clean value. Without receivers the metric is read from this run.
    With receivers, their `receiver_input` (hook_q/k/v, at every position) is recorded in it and
    patched into a clean run in which everything else recomputes.
    """
    cfg = model.cfg
    n_senders, names = senders.shape[0], [head_hook_name(layer, "z") for layer in range(cfg.n_layers)]
    mlp_names = [f"blocks.{layer}.hook_mlp_out" for layer in range(cfg.n_layers)] if freeze_mlps else []
    clean = cache_activations(model, clean_tokens, names + mlp_names)
    corrupt = cache_activations(model, corrupt_tokens, names)
    tokens = clean_tokens.to(cfg.device).repeat(n_senders, 1)
    senders = senders.to(cfg.device)

    def freeze(layer: int):
        return lambda z, hook: _replace_heads(clean[names[layer]], corrupt[names[layer]], senders[:, layer])

    hooks = [(names[layer], freeze(layer)) for layer in range(cfg.n_layers)]
    hooks += [(name, lambda act, hook, name=name: clean[name].repeat(n_senders, 1, 1)) for name in mlp_names]
    if receivers is None:
        logits = model.run_with_hooks(tokens, fwd_hooks=hooks)
        return metric(logits.unflatten(0, (n_senders, -1)))
    receivers = receivers.to(cfg.device)
    layers = [layer for layer in range(cfg.n_layers) if receivers[layer].any()]
    inputs = [head_hook_name(layer, receiver_input) for layer in layers]
    recorded: dict[str, Tensor] = {}

    def record(name: str):
        def save(act: Tensor, hook) -> None:
            recorded[name] = act.clone()

        return save

    model.run_with_hooks(tokens, fwd_hooks=hooks + [(name, record(name)) for name in inputs])

    def patch(layer: int, name: str):
        mask = receivers[layer][None, :, None]
        return lambda act, hook: torch.where(mask, recorded[name], act)

    logits = model.run_with_hooks(tokens, fwd_hooks=[(name, patch(layer, name)) for layer, name in zip(layers, inputs)])
    return metric(logits.unflatten(0, (n_senders, -1)))

