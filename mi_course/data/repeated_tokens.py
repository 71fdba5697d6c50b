"""Repeated random tokens: the data that makes induction visible.

A random token sequence is unpredictable, so a model's loss on it is about log(vocabulary).
Repeat it, and a model with induction heads predicts the second copy almost perfectly: "the
token after the previous occurrence of the current token comes next" (Elhage et al. 2021,
Olsson et al. 2022). Two generators live here:

- `repeated_tokens`: Chapter 3's probe batch, `[BOS] + segment + segment`;
- `repeat_mix_batch`: the training distribution of `attn-only-2l`, in which repeated segments
  of varying length sit at varying positions among random tokens, and some rows hold none.

Both draw only *content* tokens (never BOS, padding or unknown), from a seeded generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Int
from torch import Tensor
from transformers import PreTrainedTokenizerBase


def content_token_ids(tokenizer: PreTrainedTokenizerBase) -> Int[Tensor, "n_content"]:
    """The ids a random sequence may use: every id of the vocabulary except the special ones."""
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)
    ids = torch.arange(len(tokenizer))
    return ids[~torch.isin(ids, special)]


def repeated_tokens(
    tokenizer: PreTrainedTokenizerBase,
    batch: int,
    seg_len: int,
    seed: int = 0,
    prepend_bos: bool = True,
) -> Int[Tensor, "batch pos"]:
    """`batch` rows of `[BOS] + segment + segment`, each segment `seg_len` random tokens.

    Tokens within a segment are distinct (drawn without replacement), so every token of the
    second copy has exactly one earlier occurrence and the induction target is unambiguous.
    Without BOS a row is `2 * seg_len` long, with it `2 * seg_len + 1`.
    """
    ids = content_token_ids(tokenizer)
    if not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    if not isinstance(seg_len, int) or not 2 <= seg_len <= len(ids):
        raise ValueError(
            f"seg_len must be an int from 2 to {len(ids)} (the number of distinct content "
            f"tokens), got {seg_len!r}"
        )
    generator = torch.Generator().manual_seed(seed)
    picks = torch.rand(batch, len(ids), generator=generator).argsort(dim=-1)[:, :seg_len]
    segment = ids[picks]
    parts = [segment, segment]
    if prepend_bos:
        parts.insert(0, torch.full((batch, 1), tokenizer.bos_token_id, dtype=torch.long))
    return torch.cat(parts, dim=-1)


@dataclass(frozen=True)
class RepeatMix:
    """The attn-only-2l training distribution.

    A row is BOS plus `seq_len` i.i.d. random tokens. With probability `p_repeat` a segment of
    `min_seg`..`max_seg` tokens (uniform) occurs twice, at random non-overlapping positions:
    the first copy starts anywhere it leaves room for the second, and the second anywhere after
    the first, so copies are never closer than `min_seg` tokens. Other rows hold no planted
    repeat, so "always copy" is not a free strategy. Tokens also recur by chance: with ~100
    token types that happens to about a quarter of a row's tokens, induction is then right only
    about half the times it fires, and a trained model hedges (see the attn-only-2l card).
    """

    seq_len: int = 60
    min_seg: int = 10
    max_seg: int = 25
    p_repeat: float = 0.75

    def __post_init__(self) -> None:
        if not 1 <= self.min_seg <= self.max_seg or 2 * self.max_seg > self.seq_len:
            raise ValueError(
                f"need 1 <= min_seg <= max_seg and 2 * max_seg <= seq_len, got {self}"
            )


def _uniform_int(
    low: Int[Tensor, "batch"], high: Int[Tensor, "batch"], generator: torch.Generator
) -> Int[Tensor, "batch"]:
    """One integer per row, uniform on the inclusive range [low, high]."""
    draw = torch.rand(low.shape, generator=generator)
    return low + (draw * (high - low + 1)).long()


def repeat_mix_batch(
    batch: int,
    token_ids: Int[Tensor, "n_content"],
    bos_id: int,
    generator: torch.Generator,
    mix: RepeatMix = RepeatMix(),
) -> Int[Tensor, "batch seq_plus_bos"]:
    """One training batch from `mix`, built without a Python loop over rows.

    Each row starts as i.i.d. random tokens; in repeating rows, the positions of the second
    copy read from the first copy through an index map.
    """
    tokens = token_ids[torch.randint(len(token_ids), (batch, mix.seq_len), generator=generator)]
    repeats = torch.rand(batch, generator=generator) < mix.p_repeat
    zeros = torch.zeros(batch, dtype=torch.long)
    seg = _uniform_int(zeros + mix.min_seg, zeros + mix.max_seg, generator)
    first = _uniform_int(zeros, mix.seq_len - 2 * seg, generator)
    second = _uniform_int(first + seg, mix.seq_len - seg, generator)

    pos = torch.arange(mix.seq_len).expand(batch, -1)
    in_copy = (pos >= second[:, None]) & (pos < (second + seg)[:, None]) & repeats[:, None]
    source = torch.where(in_copy, pos - (second - first)[:, None], pos)
    tokens = tokens.gather(1, source)
    bos = torch.full((batch, 1), bos_id, dtype=torch.long)
    return torch.cat([bos, tokens], dim=-1)
