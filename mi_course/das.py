"""One-direction distributed alignment search (DAS) in an MLP's hidden layer, on IOI pairs.

Makelov, Lange & Nanda (2023) found the subspace-patching illusion in GPT-2's IOI circuit: an MLP
layer whose whole patch does nothing, and a direction in its hidden (post-activation) space,
found by DAS (Geiger et al. 2024), whose patch flips the answer. Chapter 7 runs the same recipe
on `ioi-4l`:

- pairs whose answer changes: the *source* is the base sentence with every later mention of S
  replaced by IO, so the source's answer is the base's S (`answer_swapped`). The variable is
  which of the two intro names is the answer (the first or the second), the same for every pair;
- a site: one MLP layer's hidden vector (`blocks.L.mlp.hook_post`) at one role's position;
- the patch's effect on logit(IO) - logit(S) of the base, as a fraction of the distance to the
  source's logit difference (`effect`): 0 nothing, 1 all the way;
- DAS: gradient descent on one direction so that patching along it makes the base answer like
  the source (`fit_direction`).

The same site machinery runs on `facts-4l` (`person_swaps`, `fact_patch_pairs`: MLP hidden
vectors at the last subject token, one pair of people at a time), with the best direction to
first order (`first_order_directions`) in place of DAS.

The checks that expose an illusion (the whole-component patch, the direction's split into the
part W_out cannot see and the part it reads, and how much the data vary along each) are in
`mi_course.illusions`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from jaxtyping import Float, Int
from torch import Tensor

from mi_course.data import facts
from mi_course.data.ioi_grammar import BOS, PAD, TOKEN_ID, VOCAB, IOIPrompts
from mi_course.illusions import subspace_patch
from mi_course.ioi_circuit import group_means

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

# Fillers for `person_swaps`: the same sentence at five offsets.
FILLERS: tuple[tuple[str, ...], ...] = ((), ("well",), ("so", "now"), ("today",), ("okay", "then"))


def answer_swapped(prompts: IOIPrompts) -> Int[Tensor, "batch pos"]:
    """Each clean prompt with every mention of S after the intro replaced by IO: the same
    sentence with the roles of the pair exchanged, so its answer is the base's S. Aligned token
    by token with `prompts.clean` (the S2-corrupted twin marks which tokens change)."""
    return torch.where(prompts.corrupted != prompts.clean, prompts.io[:, None], prompts.clean)


def with_names(prompts: IOIPrompts, io: str, s: str) -> IOIPrompts:
    """The prompts with their IO and S replaced by the names `io` and `s` everywhere (clean and
    corrupted), rows whose third name C or fresh S2 name is one of the two left out: one name
    pair in many sentences, so that "which of the two is the answer" is a single binary variable."""
    new_io, new_s = TOKEN_ID[io], TOKEN_ID[s]
    keep = ~((prompts.clean == new_io) | (prompts.clean == new_s) | (prompts.corrupted == new_io)
             | (prompts.corrupted == new_s)).any(1)
    rows = keep.nonzero()[:, 0]

    def rename(tokens: Tensor) -> Tensor:
        tokens = tokens[rows]
        io_here, s_here = prompts.io[rows, None], prompts.s[rows, None]
        return torch.where(tokens == io_here, new_io, torch.where(tokens == s_here, new_s, tokens))

    return dataclasses.replace(
        prompts, clean=rename(prompts.clean), corrupted=rename(prompts.corrupted),
        io=torch.full((len(rows),), new_io), s=torch.full((len(rows),), new_s),
        positions={role: where[rows] for role, where in prompts.positions.items()},
        structure=tuple(prompts.structure[i] for i in rows.tolist()), abba=prompts.abba[rows],
        texts=tuple(" ".join(VOCAB[t] for t in row if t not in (TOKEN_ID[BOS], TOKEN_ID[PAD]))
                    for row in rename(prompts.clean).tolist()),
    )


@dataclass(frozen=True)
class PatchPairs:
    """Base and source prompts of one site, with what a patch there needs: the source's hidden
    vectors at the site, and the base's and source's logit differences, logit(io) - logit(s) at
    `end` (IOI: the base's IO and S; `facts-4l`: the base's and the source's objects)."""

    base: Int[Tensor, "batch pos"]
    position: Int[Tensor, " batch"]
    end: Int[Tensor, " batch"]
    io: Int[Tensor, " batch"]
    s: Int[Tensor, " batch"]
    layer: int
    source_hidden: Float[Tensor, "batch d_mlp"]
    base_hidden: Float[Tensor, "batch d_mlp"]
    base_diff: Float[Tensor, " batch"]
    source_diff: Float[Tensor, " batch"]

    def __len__(self) -> int:
        return self.base.shape[0]

    def rows(self, index: Int[Tensor, " k"]) -> PatchPairs:
        """The pairs at `index`: a minibatch."""
        return PatchPairs(self.base[index], self.position[index], self.end[index], self.io[index], self.s[index],
                          self.layer, self.source_hidden[index], self.base_hidden[index], self.base_diff[index],
                          self.source_diff[index])


def hook_name(layer: int) -> str:
    return f"blocks.{layer}.mlp.hook_post"


def _logit_diff(logits: Float[Tensor, "batch pos vocab"], end: Tensor, io: Tensor, s: Tensor) -> Float[Tensor, " batch"]:
    rows = torch.arange(logits.shape[0], device=logits.device)
    at = logits[rows, end]
    return at[rows, io] - at[rows, s]


@torch.no_grad()
def _site_pairs(
    model: TransformerBridge,
    base: Int[Tensor, "batch pos"],
    source: Int[Tensor, "batch pos"],
    end: Int[Tensor, " batch"],
    answer: Int[Tensor, " batch"],
    other: Int[Tensor, " batch"],
    sites: dict[tuple[int, str], Int[Tensor, " batch"]],
) -> dict[tuple[int, str], PatchPairs]:
    """`PatchPairs` for every site ((MLP layer, label) -> each row's position), from one forward
    pass of the base and one of the source; the metric is logit(answer) - logit(other) at `end`."""
    device = model.cfg.device
    names = {hook_name(layer) for layer, _ in sites}
    rows = torch.arange(len(base), device=device)
    caches, diffs = [], []
    for tokens in (base, source):
        logits, cache = model.run_with_cache(tokens.to(device), names_filter=lambda name: name in names)
        caches.append(cache)
        diffs.append(_logit_diff(logits, end.to(device), answer.to(device), other.to(device)).cpu())

    def hidden(cache, layer: int, position: Tensor) -> Tensor:
        return cache[hook_name(layer)][rows, position.to(device)].cpu()

    return {(layer, label): PatchPairs(base, position, end, answer, other, layer,
                                       source_hidden=hidden(caches[1], layer, position),
                                       base_hidden=hidden(caches[0], layer, position),
                                       base_diff=diffs[0], source_diff=diffs[1])
            for (layer, label), position in sites.items()}


def patch_pairs(
    model: TransformerBridge, prompts: IOIPrompts, sites: list[tuple[int, str]]
) -> dict[tuple[int, str], PatchPairs]:
    """For each site (MLP layer, role such as "S2" or "end"), everything a patch of the MLP's
    hidden vector there needs, from two forward passes in all (base and source); padding past
    the longest prompt is trimmed."""
    width = int(prompts.positions["end"].max()) + 1
    return _site_pairs(model, prompts.clean[:, :width], answer_swapped(prompts)[:, :width],
                       prompts.positions["end"], prompts.io, prompts.s,
                       {(layer, role): prompts.positions[role] for layer, role in sites})


def person_swaps(
    people: Sequence[tuple[facts.Fact, facts.Fact]], phrasings: slice, fillers: Sequence[tuple[str, ...]] = FILLERS
) -> tuple[facts.FactPrompts, facts.FactPrompts, Int[Tensor, " batch"]]:
    """`facts-4l` prompts for pairs of people (same relation, same name length): per pair, the
    base names the first and the source the second, in the relation's `phrasings` after every
    filler; and each row's pair index. Within a pair the variable is binary, "which of the two",
    over sentences that differ in their wording."""
    firsts, seconds, words, pads, group = [], [], [], [], []
    for index, (first, second) in enumerate(people):
        for phrasing in facts.PHRASINGS[first.relation][phrasings]:
            for filler in fillers:
                firsts.append(first)
                seconds.append(second)
                words.append(phrasing)
                pads.append(filler)
                group.append(index)
    return (facts.make_prompts(firsts, words, pads), facts.make_prompts(seconds, words, pads), torch.tensor(group))


def fact_patch_pairs(
    model: TransformerBridge, base: facts.FactPrompts, source: facts.FactPrompts, layer: int
) -> PatchPairs:
    """The site MLP `layer` at the last subject token of `facts-4l` (where causal tracing finds
    the fact looked up, in layer 0); the metric is logit(base's object) - logit(source's)."""
    return _site_pairs(model, base.tokens, source.tokens, base.final, base.answer, source.answer,
                       {(layer, "last subject"): base.last_subject})[layer, "last subject"]


def patched_diff(
    model: TransformerBridge,
    pairs: PatchPairs,
    direction: Float[Tensor, " d_mlp"] | Float[Tensor, "batch d_mlp"] | None,
) -> Float[Tensor, " batch"]:
    """Each base's logit difference with its hidden vector at the site patched from its source:
    along `direction` only (`illusions.subspace_patch`; one direction for every row, or one per
    row), or the whole vector when it is None. Differentiable in `direction`."""
    device = model.cfg.device
    rows = torch.arange(len(pairs), device=device)
    position = pairs.position.to(device)
    source = pairs.source_hidden.to(device)

    def hook(hidden: Tensor, hook) -> Tensor:
        new = source if direction is None else subspace_patch(hidden[rows, position], source, direction.to(device))
        return hidden.index_put((rows, position), new)

    logits = model.run_with_hooks(pairs.base.to(device), fwd_hooks=[(hook_name(pairs.layer), hook)])
    return _logit_diff(logits, pairs.end.to(device), pairs.io.to(device), pairs.s.to(device)).cpu()


def effect(pairs: PatchPairs, patched: Float[Tensor, " batch"]) -> float:
    """How far a patch moved the mean logit difference from the base's toward the source's:
    (patched - base) / (source - base), of the means. 1: the output became the source's."""
    return ((patched.mean() - pairs.base_diff.mean()) / (pairs.source_diff.mean() - pairs.base_diff.mean())).item()


def fit_direction(
    model: TransformerBridge,
    pairs: PatchPairs,
    steps: int = 80,
    batch: int = 16,
    lr: float = 0.1,
    seed: int = 0,
    progress: Callable | None = None,
) -> Float[Tensor, " d_mlp"]:
    """DAS with a one-dimensional subspace: the unit direction whose patch (source into base)
    makes the base's output most like the source's, by Adam on the source answer's
    cross-entropy against the base answer, softplus(logit(IO) - logit(S)). Seeded init and
    minibatches; the model's weights stay fixed."""
    g = torch.Generator().manual_seed(seed)
    direction = torch.randn(pairs.source_hidden.shape[-1], generator=g).requires_grad_(True)
    optimiser = torch.optim.Adam([direction], lr=lr)
    trainable = [p for p in model.parameters() if p.requires_grad]
    for p in trainable:
        p.requires_grad_(False)
    try:
        with torch.enable_grad():
            for _ in (progress or range)(steps):
                index = torch.randperm(len(pairs), generator=g)[:batch]
                loss = torch.nn.functional.softplus(patched_diff(model, pairs.rows(index), direction)).mean()
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
    finally:
        for p in trainable:
            p.requires_grad_(True)
    return (direction / direction.norm()).detach()


def first_order_best(
    model: TransformerBridge, pairs: PatchPairs
) -> tuple[float, Float[Tensor, " d_mlp"]]:
    """The largest effect any one direction's patch can have at this site, to first order, and
    that direction. Patching along a unit v changes a base's logit difference by about
    ((h_source - h_base) . v) (v . g), g its gradient with respect to the hidden vector; the mean
    over pairs is v^T M v with M the symmetric part of mean(a g^T), so the best v is an extreme
    eigenvector of M. A site where this is small offers DAS nothing to find, illusion or not."""
    estimates, directions = first_order_directions(model, pairs, torch.zeros(len(pairs), dtype=torch.long))
    return estimates[0].item(), directions[0]


def first_order_directions(
    model: TransformerBridge, pairs: PatchPairs, group: Int[Tensor, " batch"]
) -> tuple[Float[Tensor, " groups"], Float[Tensor, "groups d_mlp"]]:
    """`first_order_best` for each group of rows (`group`: 0 .. groups-1 per row) from one
    forward and one backward pass: a best direction per group, e.g. per pair of people."""
    device = model.cfg.device
    rows = torch.arange(len(pairs), device=device)
    position = pairs.position.to(device)
    nudge = torch.zeros(len(pairs), pairs.base_hidden.shape[-1], device=device, requires_grad=True)

    def hook(hidden: Tensor, hook) -> Tensor:
        return hidden.index_put((rows, position), hidden[rows, position] + nudge)

    with torch.enable_grad():
        logits = model.run_with_hooks(pairs.base.to(device), fwd_hooks=[(hook_name(pairs.layer), hook)])
        diff = _logit_diff(logits, pairs.end.to(device), pairs.io.to(device), pairs.s.to(device))
        (gradient,) = torch.autograd.grad(diff.sum(), nudge)
    moved, gradient = pairs.source_hidden - pairs.base_hidden, gradient.cpu()
    one_hot = torch.nn.functional.one_hot(group).float()                          # [batch, groups]
    # mean of a g^T per group, without a [batch, d_mlp, d_mlp] tensor
    product = torch.einsum("bg,bi,bj->gij", one_hot, moved, gradient) / one_hot.sum(0)[:, None, None]
    values, vectors = torch.linalg.eigh((product + product.transpose(1, 2)) / 2)
    gap = group_means(pairs.source_diff - pairs.base_diff, group)
    best = (values / gap[:, None]).argmax(-1)
    picked = torch.arange(len(gap))
    return values[picked, best] / gap, vectors[picked, :, best]


def effect_by_group(pairs: PatchPairs, patched: Float[Tensor, " batch"], group: Int[Tensor, " batch"]) -> Float[Tensor, " groups"]:
    """`effect` within each group of rows."""
    base = group_means(pairs.base_diff, group)
    return (group_means(patched, group) - base) / (group_means(pairs.source_diff, group) - base)
