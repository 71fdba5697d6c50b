"""Induction heads: reference implementations for Chapter 3 and for verifying `attn-only-2l`.

An induction circuit has two parts (Elhage et al. 2021; Olsson et al. 2022): a *previous-token
head* writes "the token before me was X" into each position, and an *induction head* in a later
layer uses that to attend from the current token to the position just *after* its previous
occurrence, then copies what it finds there. On `[BOS] + segment + segment` (see
`mi_course.data.repeated_tokens`) each part leaves a mark in the attention pattern at a fixed
offset, so a head can be scored by how much attention it puts on that offset.

Sections: attention patterns; per-head detector scores; loss on the two copies; repeats planted
at a chosen distance, to find where copying works.
Every function works on all layers and heads at once.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

# --- attention patterns -----------------------------------------------------------------


def pattern_hook_name(layer: int) -> str:
    """The hook that records layer `layer`'s attention probabilities."""
    return f"blocks.{layer}.attn.hook_pattern"


@torch.no_grad()
def attention_patterns(
    model: TransformerBridge, tokens: Int[Tensor, "batch pos"]
) -> Float[Tensor, "layer batch head query key"]:
    """Every layer's attention pattern on `tokens`, stacked, from one forward pass."""
    names = {pattern_hook_name(layer) for layer in range(model.cfg.n_layers)}
    _, cache = model.run_with_cache(tokens.to(model.cfg.device), names_filter=lambda n: n in names)
    return torch.stack([cache[pattern_hook_name(layer)] for layer in range(model.cfg.n_layers)])


# --- detector scores --------------------------------------------------------------------


def _mean_on_offset(
    patterns: Float[Tensor, "layer batch head query key"], offset: int, last: int | None = None
) -> Float[Tensor, "layer head"]:
    """Mean attention from each query to the key `offset` positions back.

    Only the last `last` queries count (all that have such a key when None), averaged over
    the batch too.
    """
    on_offset = patterns.diagonal(offset=-offset, dim1=-2, dim2=-1)
    if last is not None:
        on_offset = on_offset[..., -last:]
    return on_offset.mean(dim=(1, -1))


def _check_patterns(patterns: Tensor) -> None:
    if patterns.ndim != 5 or patterns.shape[-1] != patterns.shape[-2]:
        raise ValueError(
            f"expected patterns of shape (layer, batch, head, query, key), got {tuple(patterns.shape)}"
            " (attention_patterns(model, tokens) returns that shape)"
        )


def _check_repeated(patterns: Tensor, seg_len: int) -> None:
    _check_patterns(patterns)
    if not 2 <= seg_len <= patterns.shape[-1] // 2:
        raise ValueError(
            f"seg_len={seg_len} does not fit {patterns.shape[-1]} positions: the sequence must "
            "end in two copies of a segment of at least 2 tokens"
        )


def previous_token_scores(
    patterns: Float[Tensor, "layer batch head query key"],
) -> Float[Tensor, "layer head"]:
    """Mean attention from each position to the one just before it (all positions but the first)."""
    _check_patterns(patterns)
    return _mean_on_offset(patterns, offset=1)


def duplicate_token_scores(
    patterns: Float[Tensor, "layer batch head query key"], seg_len: int
) -> Float[Tensor, "layer head"]:
    """Mean attention from each token of the second copy to the same token in the first copy.

    The sequence must end in two copies of a `seg_len`-token segment (BOS before them is fine).
    """
    _check_repeated(patterns, seg_len)
    return _mean_on_offset(patterns, offset=seg_len, last=seg_len)


def induction_scores(
    patterns: Float[Tensor, "layer batch head query key"], seg_len: int
) -> Float[Tensor, "layer head"]:
    """Mean attention from each token of the second copy to the token *after* its first occurrence.

    The sequence must end in two copies of a `seg_len`-token segment (BOS before them is fine).
    """
    _check_repeated(patterns, seg_len)
    return _mean_on_offset(patterns, offset=seg_len - 1, last=seg_len)


class HeadScores(NamedTuple):
    """The three detector scores for every head, each of shape (layer, head)."""

    previous_token: Float[Tensor, "layer head"]
    duplicate_token: Float[Tensor, "layer head"]
    induction: Float[Tensor, "layer head"]


def score_heads(model: TransformerBridge, tokens: Int[Tensor, "batch pos"], seg_len: int) -> HeadScores:
    """All three scores for every head of `model`, on repeated tokens ending in two `seg_len` copies."""
    patterns = attention_patterns(model, tokens)
    return HeadScores(
        previous_token=previous_token_scores(patterns),
        duplicate_token=duplicate_token_scores(patterns, seg_len),
        induction=induction_scores(patterns, seg_len),
    )


# --- loss on the two copies ---------------------------------------------------------------


class HalfLosses(NamedTuple):
    """Mean next-token loss on the first copy of the segment and on the repeat."""

    first: float
    repeat: float


@torch.no_grad()
def loss_by_half(model: TransformerBridge, tokens: Int[Tensor, "batch pos"], seg_len: int) -> HalfLosses:
    """Loss on tokens 2..seg_len of each copy: the first copy is unpredictable, the repeat is not.

    Each copy's first token is left out of both means, since nothing before it predicts it.
    """
    if not 2 <= seg_len <= tokens.shape[-1] // 2:
        raise ValueError(f"seg_len={seg_len} does not fit rows of {tokens.shape[-1]} tokens")
    per_token = model(tokens.to(model.cfg.device), return_type="loss", loss_per_token=True)
    # per_token[:, j] is the loss of predicting token j + 1.
    first = per_token[:, -(2 * seg_len - 1) : -seg_len]
    repeat = per_token[:, -(seg_len - 1) :]
    return HalfLosses(first=first.mean().item(), repeat=repeat.mean().item())


# --- repeats at a chosen distance ---------------------------------------------------------


def planted_repeats(
    tokenizer, batch: int, seg_len: int, repeat_start: int, distances: list[int], seed: int = 0,
    length: int = 60,
) -> Int[Tensor, "distance batch pos"]:
    """Rows of `[BOS]` + `length` distinct random content words, in which the `seg_len` words
    `distance` positions before `repeat_start` are copied to `repeat_start`, one slice per distance.

    All distances share the same random rows, so their losses differ only by where the earlier
    copy sits. `[BOS] + segment + segment` ties the distance to the segment length; this does not.
    """
    from mi_course.data.repeated_tokens import content_token_ids

    if repeat_start + seg_len > length + 1 or min(distances) < seg_len or repeat_start - max(distances) < 1:
        raise ValueError(f"copies must not overlap and must fit after BOS in {length + 1} positions: "
                         f"seg_len={seg_len}, repeat_start={repeat_start}, distances={distances}")
    content = content_token_ids(tokenizer)
    generator = torch.Generator().manual_seed(seed)
    words = content[torch.rand(batch, len(content), generator=generator).argsort(dim=-1)[:, :length]]
    rows = torch.cat([torch.full((batch, 1), tokenizer.bos_token_id), words], dim=-1)
    rows = rows.repeat(len(distances), 1, 1)
    source = repeat_start - torch.tensor(distances)[:, None] + torch.arange(seg_len)    # [distance, seg_len]
    rows[:, :, repeat_start:repeat_start + seg_len] = rows.gather(-1, source[:, None, :].expand(-1, batch, -1))
    return rows


@torch.no_grad()
def copy_loss_by_distance(
    model: TransformerBridge, seg_len: int, repeat_start: int, distances: list[int], batch: int = 64, seed: int = 0,
) -> dict[int, float]:
    """Mean loss on words 2..seg_len of a repeat at `repeat_start`, for each distance back to the
    earlier copy (`planted_repeats` rows, one forward pass for all distances)."""
    rows = planted_repeats(model.tokenizer, batch, seg_len, repeat_start, distances, seed).to(model.cfg.device)
    flat = rows.flatten(0, 1)
    per_token = model(flat, return_type="loss", loss_per_token=True).unflatten(0, rows.shape[:2])
    # per_token[..., j] is the loss of predicting token j + 1
    loss = per_token[:, :, repeat_start : repeat_start + seg_len - 1].mean(dim=(1, 2))
    return dict(zip(distances, loss.tolist()))


@torch.no_grad()
def previous_token_by_position(
    model: TransformerBridge, tokens: Int[Tensor, "batch pos"], head: tuple[int, int]
) -> Float[Tensor, "pos_minus_1"]:
    """Mean attention of `head` (layer, head) from each query position to the one before it;
    entry j is query position j + 1. Where a previous-token head stops working shows here."""
    layer, index = head
    patterns = attention_patterns(model, tokens)[layer, :, index]
    return patterns.diagonal(offset=-1, dim1=-2, dim2=-1).mean(0)
