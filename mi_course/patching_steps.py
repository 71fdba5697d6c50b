"""The steps of a patching experiment as Chapter 5's learner writes them, and the induction
corruptions the chapter compares. Each step is a thin layer over `mi_course.patching`, whose
sweeps do the batched work (and equal `transformer_lens.patching`)."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from mi_course import patching
from mi_course.data import facts
from mi_course.data.repeated_tokens import content_token_ids, repeated_tokens

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import PreTrainedTokenizerBase

# --- clean and corrupted fact prompts ------------------------------------------------------------


def subject_swaps(
    relation: str, n: int, seed: int = 0, phrasing: int = 3
) -> tuple[facts.FactPrompts, facts.FactPrompts]:
    """`n` clean/corrupted pairs in one training phrasing of `relation`, all with two-token
    subjects, so every prompt has the same layout and positions mean the same thing in every row:
    the corrupted prompt names another subject whose object differs."""
    kb = [fact for fact in facts.knowledge_base() if fact.relation == relation and len(fact.subject) == 2]
    rng = random.Random(seed)
    clean = rng.sample(kb, n)
    corrupt = [rng.choice([other for other in kb if other.obj != fact.obj]) for fact in clean]
    phrasings = [facts.PHRASINGS[relation][phrasing]] * n
    return facts.make_prompts(clean, phrasings), facts.make_prompts(corrupt, phrasings)


# --- the metric ----------------------------------------------------------------------------------


def normalised_logit_diff(
    logits: Float[Tensor, "... batch pos vocab"],
    position: Int[Tensor, " batch"],
    correct: Int[Tensor, " batch"],
    wrong: Int[Tensor, " batch"],
    clean: float,
    corrupt: float,
) -> Float[Tensor, "..."]:
    """The batch-mean logit difference, rescaled so the corrupted run's value `corrupt` maps to 0
    and the clean run's value `clean` to 1."""
    return patching.normalise(patching.logit_diff(logits, position, correct, wrong), clean, corrupt)


def centred_logit(
    logits: Float[Tensor, "... batch pos vocab"], position: Int[Tensor, " batch"], answer: Int[Tensor, " batch"]
) -> Float[Tensor, "..."]:
    """Batch mean of logit(answer) minus the mean logit at `position`: linear in the logits, and
    it needs no second answer (a corruption may leave the model with no particular one)."""
    rows = torch.arange(logits.shape[-3], device=logits.device)
    at = logits[..., rows, position.to(logits.device), :]
    picked = at.gather(-1, answer.to(logits.device).expand(*at.shape[:-1])[..., None])[..., 0]
    return (picked - at.mean(-1)).mean(-1)


# --- every residual-stream site at once ----------------------------------------------------------


def patch_resid_by_pos(
    model: TransformerBridge,
    clean_tokens: Int[Tensor, "batch pos"],
    corrupt_tokens: Int[Tensor, "batch pos"],
    metric: patching.Metric,
) -> Float[Tensor, "layer pos"]:
    """Denoising of `blocks.{L}.hook_resid_pre` at every (layer, position), one stacked batch."""
    return patching.resid_by_pos(model, clean_tokens, corrupt_tokens, metric)


# --- causal tracing ------------------------------------------------------------------------------


def subject_noise(
    W_E: Float[Tensor, "vocab d_model"],
    tokens: Int[Tensor, "batch pos"],
    subject_mask: Bool[Tensor, "batch pos"],
    scale: float = 3.0,
    samples: int = 4,
    seed: int = 0,
) -> Float[Tensor, "samples_times_batch pos d_model"]:
    """Meng et al.'s corruption: Gaussian noise of `scale` x the std of the subject tokens'
    embeddings, at the subject positions only; sample-major rows (row s * batch + b)."""
    std = W_E[tokens[subject_mask]].std()
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(samples, *tokens.shape, W_E.shape[1], generator=generator)
    return (noise * scale * std * subject_mask[None, :, :, None]).flatten(0, 1)


# --- induction corruptions (attn-only-2l) --------------------------------------------------------


def induction_prompt(
    tokenizer: PreTrainedTokenizerBase, batch: int, seg_len: int, seed: int = 0
) -> tuple[Int[Tensor, "batch pos"], int]:
    """Repeated random tokens `<bos> s_1..s_n s_1..s_n` and the query position: the second copy
    of s_k with k = n - 3, whose next token s_{k+1} an induction circuit predicts."""
    return repeated_tokens(tokenizer, batch, seg_len, seed), 2 * seg_len - 3


def answer_position(seg_len: int, query: int) -> int:
    """Where the answer s_{k+1} sits in the first copy (the token the induction head copies)."""
    return query - seg_len + 1


def replacements(tokenizer: PreTrainedTokenizerBase, clean: Int[Tensor, "batch pos"], seed: int) -> Int[Tensor, " batch"]:
    """One content token per row, drawn with `seed` among those that occur nowhere in the row."""
    ids = content_token_ids(tokenizer)
    present = torch.zeros(clean.shape[0], len(tokenizer), dtype=torch.bool).scatter_(1, clean, True)
    scores = torch.rand(clean.shape[0], len(ids), generator=torch.Generator().manual_seed(seed))
    return ids[scores.masked_fill(present[:, ids], 2.0).argmin(-1)]


def value_corruption(clean: Int[Tensor, "batch pos"], seg_len: int, query: int, new: Int[Tensor, " batch"]) -> Tensor:
    """Change the earlier occurrence of the answer: what the induction head would copy."""
    corrupt = clean.clone()
    corrupt[:, answer_position(seg_len, query)] = new
    return corrupt


def first_copy_corruption(clean: Int[Tensor, "batch pos"], seg_len: int, other: Int[Tensor, "batch pos"]) -> Tensor:
    """Replace the whole first copy by other tokens: nothing earlier predicts the second copy."""
    corrupt = clean.clone()
    corrupt[:, 1 : 1 + seg_len] = other[:, 1 : 1 + seg_len]
    return corrupt


def key_corruption(clean: Int[Tensor, "batch pos"], seg_len: int, query: int) -> Int[Tensor, "batch pos"]:
    """A corruption localised to what the induction head *looks for*: the token before the
    answer's earlier occurrence (s_k in the first copy) becomes another token of the segment,
    so no earlier position follows s_k."""
    corrupt = clean.clone()
    before = answer_position(seg_len, query) - 1
    corrupt[:, before] = clean[:, 1 + (before + 2) % seg_len]
    return corrupt
