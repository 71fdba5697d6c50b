"""The IOI circuit's head classes and its evaluation (Wang et al. 2023; Miller et al. 2024).

Head classes are read from attention between the prompts' roles (END, IO, S1, S2, C) and from
Wang et al.'s copying score. A circuit is evaluated by *knockout*: every head outside it is
ablated, so only the circuit's heads (and every MLP, as in the paper) carry information about
the prompt. Faithfulness compares the circuit's logit difference with the whole model's;
completeness asks whether the circuit and the model degrade alike when parts of the circuit are
removed; minimality whether every head of the circuit matters for some such removal.

Ablation replaces a head's z by a value that carries no information about the prompt's names:
its mean over a reference distribution (Wang et al.: the ABC distribution, three distinct
names, per template and position), zero, or its value on a resampled reference prompt. Miller
et al. (2024) show that the faithfulness of one circuit swings widely between these choices.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import TYPE_CHECKING, Literal

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from mi_course.circuits import z_hook_name
from mi_course.data.ioi_grammar import IOIPrompts
from mi_course.patching import Metric, cache_activations, logit_diff

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

Ablation = Literal["mean", "zero", "resample"]

# --- head classes ------------------------------------------------------------------------------


def role_attention(
    patterns: Float[Tensor, "layer batch head query key"],
    query: Int[Tensor, " batch"],
    key: Int[Tensor, " batch"],
) -> Float[Tensor, "layer head"]:
    """Mean attention from each prompt's `query` position to its `key` position, per head.

    Rows whose `key` is -1 (the role is absent from that prompt, e.g. no third name C) are left
    out of the mean.
    """
    present = key >= 0
    rows = present.nonzero()[:, 0]
    picked = patterns[:, rows, :, query[rows], key[rows]]   # [row, layer, head] (advanced indices first)
    return picked.mean(0)


@torch.no_grad()
def name_copying_logits(model: TransformerBridge, names: Int[Tensor, " n"]) -> Float[Tensor, "layer head n n"]:
    """The names' logits when each head copies each name: a name's token embedding goes through
    layer 0's MLP (with its LayerNorm, added to the embedding, as the first block would), the
    head's LayerNorm and OV circuit, the final LayerNorm and the unembedding (Wang et al.)."""
    blocks = model.original_model.transformer.h
    final_ln = model.original_model.transformer.ln_f
    x = model.W_E[names]
    x = x + blocks[0].mlp(blocks[0].ln_2(x))
    values = torch.stack([blocks[layer].ln_1(x) for layer in range(model.cfg.n_layers)])   # [layer, n, d_model]
    written = torch.einsum("lnm,lhmd,lhde->lhne", values, model.W_V, model.W_O)
    return final_ln(written) @ model.W_U[:, names]


def name_copying_scores(model: TransformerBridge, names: Int[Tensor, " n"], top: int = 5) -> Float[Tensor, "layer head"]:
    """Wang et al.'s copying score of every head, over the token ids `names`: the fraction of
    names whose own logit is among the `top` largest of the names' logits when the head copies
    that name (`name_copying_logits`)."""
    logits = name_copying_logits(model, names)
    own = torch.arange(len(names), device=logits.device)[:, None]
    return (logits.topk(top, dim=-1).indices == own).any(-1).float().mean(-1)


# --- knockout ------------------------------------------------------------------------------------


def group_means(values: Float[Tensor, "batch ..."], groups: Int[Tensor, " batch"]) -> Float[Tensor, "groups ..."]:
    """The mean of the rows of each group (`groups`: 0 .. n_groups - 1 per row)."""
    n_groups = int(groups.max()) + 1
    sums = torch.zeros(n_groups, *values.shape[1:], dtype=values.dtype, device=values.device)
    sums.index_add_(0, groups, values)
    counts = torch.bincount(groups, minlength=n_groups).to(values.dtype)
    return sums / counts.view(-1, *[1] * (values.ndim - 1))


def group_mean(values: Float[Tensor, "batch ..."], groups: Int[Tensor, " batch"]) -> Float[Tensor, "batch ..."]:
    """Each row replaced by the mean of the rows in its group (same template: same positions)."""
    return group_means(values, groups)[groups]


@torch.no_grad()
def knockout(
    model: TransformerBridge,
    tokens: Int[Tensor, "batch pos"],
    reference_tokens: Int[Tensor, "batch pos"],
    groups: Int[Tensor, " batch"],
    keep: Bool[Tensor, "variant layer head"],
    metric: Metric,
    ablation: Ablation = "mean",
) -> Float[Tensor, " variant"]:
    """The metric on `tokens` with every head *outside* `keep[v]` ablated, one variant per row of
    `keep`, all variants in one forward pass.

    "mean": a head's z becomes its mean over the `reference_tokens` rows of the same group,
    per position; "zero": 0; "resample": its z on the aligned `reference_tokens` row. An
    all-True row of `keep` is the whole model, an all-False row the empty circuit.
    """
    if ablation not in ("mean", "zero", "resample"):
        raise ValueError(f"ablation must be 'mean', 'zero' or 'resample', got {ablation!r}")
    n_layers = model.cfg.n_layers
    names = [z_hook_name(layer) for layer in range(n_layers)]
    reference = cache_activations(model, reference_tokens, names)
    if ablation == "mean":
        reference = {name: group_mean(z, groups.to(z.device)) for name, z in reference.items()}
    elif ablation == "zero":
        reference = {name: torch.zeros_like(z) for name, z in reference.items()}
    ablate = ~keep.to(model.cfg.device)
    copies = ablate.shape[0]

    def hook_for(layer: int):
        def hook(z: Tensor, hook) -> Tensor:
            mask = ablate[:, layer][:, None, None, :, None]
            return torch.where(mask, reference[names[layer]][None], z.unflatten(0, (copies, -1))).flatten(0, 1)

        return hook

    logits = model.run_with_hooks(tokens.to(model.cfg.device).repeat(copies, 1),
                                  fwd_hooks=[(names[layer], hook_for(layer)) for layer in range(n_layers)])
    return metric(logits.unflatten(0, (copies, -1)))


def faithfulness(
    circuit: Float[Tensor, "..."], model: Float[Tensor, "..."], empty: Float[Tensor, "..."]
) -> Float[Tensor, "..."]:
    """(F(C) - F(empty)) / (F(M) - F(empty)): 1 when the circuit does all the model does, 0 when
    it does no more than the fully ablated model (Miller et al. 2024's normalisation)."""
    return (circuit - empty) / (model - empty)



def faithful_heads(model: TransformerBridge, prompts: IOIPrompts, abc: Int[Tensor, "batch pos"], max_heads: int) -> Bool[Tensor, "layer head"]:
    """A small faithful circuit by a simple search: rank heads by how much mean-ablating each
    alone costs, then keep the top k (k <= `max_heads`) whose knockout is most faithful.
    Two batched knockouts."""
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    metric = partial(logit_diff, position=prompts.positions["end"], correct=prompts.io, wrong=prompts.s)
    groups = structure_groups(prompts)
    alone = ~torch.eye(n_layers * n_heads, dtype=torch.bool).view(-1, n_layers, n_heads)
    order = (-knockout(model, prompts.clean, abc, groups, alone, metric)).cpu().argsort(descending=True)
    tops = torch.zeros(max_heads, n_layers * n_heads, dtype=torch.bool)
    for k in range(max_heads):
        tops[k, order[: k + 1]] = True
    tops = tops.view(-1, n_layers, n_heads)
    everything = torch.ones(1, n_layers, n_heads, dtype=torch.bool)
    values = knockout(model, prompts.clean, abc, groups, torch.cat([everything, ~everything, tops]), metric).cpu()
    scores = faithfulness(values[2:], values[0], values[1])
    return tops[(scores - 1).abs().argmin()]


# --- prompts --------------------------------------------------------------------------------------


def aligned(prompts: IOIPrompts, n: int) -> IOIPrompts:
    """The first `n` prompts laid out like the most common layout (every role at the same
    position), with the common padding trimmed: what per-position patching needs."""
    layout = torch.stack([prompts.positions[role] for role in ("IO", "S1", "S2", "C", "end")], 1)
    rows, counts = layout.unique(dim=0, return_counts=True)
    same = (layout == rows[counts.argmax()]).all(1).nonzero()[:, 0][:n]
    length = int(prompts.positions["end"][same[0]]) + 1
    pick = [i.item() for i in same]
    return dataclasses.replace(
        prompts, clean=prompts.clean[same, :length], corrupted=prompts.corrupted[same, :length],
        io=prompts.io[same], s=prompts.s[same], positions={k: v[same] for k, v in prompts.positions.items()},
        structure=tuple(prompts.structure[i] for i in pick), abba=prompts.abba[same],
        texts=tuple(prompts.texts[i] for i in pick),
    )


def structure_groups(prompts: IOIPrompts) -> Int[Tensor, " batch"]:
    """Each prompt's structure as an integer 0, 1, ... (in order of first appearance)."""
    index = {name: i for i, name in enumerate(dict.fromkeys(prompts.structure))}
    return torch.tensor([index[name] for name in prompts.structure])


# --- where the circuit fails ----------------------------------------------------------------------

LATE_IO_TEMPLATE = "S and C went to the P . S met IO at the P . C gave D O to"
TEMPLATE_POOLS = ("P", "O", "D")


def template_prompts(template: str, n: int, seed: int = 0) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, " batch"], Int[Tensor, " batch"], Int[Tensor, " batch"]]:
    """`n` prompts of ioi-4l's language from `template`, whose slots S, C and IO get three
    different names and P, O, D a place, an object and a determiner (other words stay as they
    are); returned as (tokens with `<bos>` first, the END position, the IO and the S token ids)."""
    import random

    from mi_course.data import ioi_grammar as grammar

    rng = random.Random(seed)
    pools = {"P": grammar.PLACES, "O": grammar.OBJECTS, "D": grammar.DETERMINERS}
    rows, io, s = [], [], []
    for _ in range(n):
        subject, other, answer = rng.sample(grammar.NAMES, 3)
        fill = {"S": subject, "C": other, "IO": answer}
        words = [fill[slot] if slot in fill else rng.choice(pools[slot]) if slot in pools else slot
                 for slot in template.split()]
        rows.append([grammar.TOKEN_ID[grammar.BOS]] + [grammar.TOKEN_ID[word] for word in words])
        io.append(grammar.TOKEN_ID[answer])
        s.append(grammar.TOKEN_ID[subject])
    tokens = torch.tensor(rows)
    return tokens, torch.full((n,), tokens.shape[1] - 1), torch.tensor(io), torch.tensor(s)


def late_io_prompts(n: int, seed: int = 0) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, " batch"], Int[Tensor, " batch"], Int[Tensor, " batch"]]:
    """`n` IOI prompts whose IO is named only *after* the first clause (`LATE_IO_TEMPLATE`), as
    `template_prompts` returns them.

    S is mentioned twice (and a third name C twice), IO once, so the answer is still "the name
    mentioned once", but "the first clause's names minus the names mentioned later" finds none.
    """
    return template_prompts(LATE_IO_TEMPLATE, n, seed)


def word_shapes(tokens: Int[Tensor, "batch pos"]) -> list[tuple[str, ...]]:
    """Each row with names, places, objects and determiners replaced by N, P, O, D: the prompt's
    structure, whatever fills its slots."""
    from mi_course.data import ioi_grammar as grammar

    kinds = {**{w: "N" for w in grammar.NAMES}, **{w: "P" for w in grammar.PLACES},
             **{w: "O" for w in grammar.OBJECTS}, **{w: "D" for w in grammar.DETERMINERS}}
    return [tuple(kinds.get(grammar.VOCAB[t], grammar.VOCAB[t]) for t in row) for row in tokens.tolist()]
