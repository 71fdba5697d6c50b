"""Chapter 3 exercises: induction heads (Elhage et al. 2021; Olsson et al. 2022).

No exercise needs a model: each works on tensors a model would produce (logits, attention
patterns, z, weights), built here from seeded generators at sizes that grade in milliseconds.
Cases come in an order that makes each known mistake fail first on a case where it differs
from every other known mistake, so the hint it earns is its own.
"""

from __future__ import annotations

import tempfile
from functools import cache
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from mi_course import circuits, induction
from mi_course.data.repeated_tokens import content_token_ids, repeated_tokens
from mi_course.grading import Case, Exercise, Mistake, register

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# --- shared inputs -----------------------------------------------------------------------------


@cache
def _tokenizer(n_words: int) -> PreTrainedTokenizerBase:
    """A word tokenizer whose special tokens sit *inside* the id range (ids 2 and 6), so a
    solution that assumes "specials come first" fails visibly."""
    from mi_course.data.word_tokenizer import build_word_tokenizer  # loads tokenizers: only when grading

    words = [f"w{i}" for i in range(n_words)]
    words.insert(2, "<bos>")
    words.insert(6, "<unk>")
    with tempfile.TemporaryDirectory() as directory:
        return build_word_tokenizer(words, directory, pad="<bos>", bos="<bos>", unk="<unk>")


def _patterns(generator: torch.Generator, layers: int, batch: int, heads: int, pos: int) -> Tensor:
    """Random causal attention patterns, shape (layer, batch, head, query, key)."""
    scores = torch.randn(layers, batch, heads, pos, pos, generator=generator) * 2
    future = torch.ones(pos, pos, dtype=torch.bool).triu(1)
    return scores.masked_fill(future, float("-inf")).softmax(dim=-1)


# --- 2. repeated random tokens -------------------------------------------------------------------


def _repeated_tokens(tokenizer: PreTrainedTokenizerBase, batch: int, seg_len: int, seed: int = 0) -> Tensor:
    """The exercise's signature: the chapter always prepends BOS."""
    return repeated_tokens(tokenizer, batch, seg_len, seed)


def _repeated_cases(seed: int = 0) -> list[Case]:
    small, large = _tokenizer(10), _tokenizer(40)
    return [
        Case(args=(small, 4, 6), kwargs={"seed": 1 + seed}, label="4 rows, segments of 6 from 10 words"),
        Case(args=(large, 8, 20), kwargs={"seed": 2 + seed}, label="8 rows, segments of 20 from 40 words"),
        Case(args=(small, 1, 2), kwargs={"seed": 3 + seed}, label="one row, segment of 2 (edge)"),
        Case(args=(small, 3, 10), kwargs={"seed": 4 + seed}, label="segments using every word once (edge)"),
    ]


def _validate_repeated(case: Case, out: object) -> str | None:
    """Every property Chapter 3 relies on; the reasons name the property, not the data, so a
    learner's output and a known mistake fail with the same words."""
    tokenizer, batch, seg_len = case.args
    if not isinstance(out, Tensor):
        return "the output should be a torch.Tensor of token ids"
    if out.dtype != torch.long:
        return f"the output has dtype {str(out.dtype).replace('torch.', '')}; token ids must be torch.long"
    expected = (batch, 2 * seg_len + 1)
    if tuple(out.shape) != expected:
        return (f"the output has shape {tuple(out.shape)}, expected (batch, 2 * seg_len + 1) = {expected}: "
                "BOS, then the segment, then the segment again")
    if (out[:, 0] != tokenizer.bos_token_id).any():
        return "the first token of every row should be BOS (tokenizer.bos_token_id)"
    body = out[:, 1:].cpu()
    if (~torch.isin(body, content_token_ids(tokenizer))).any():
        return "a segment contains a special token (BOS or UNK) or an id outside the vocabulary"
    first, second = body[:, :seg_len], body[:, seg_len:]
    if not torch.equal(first, second):
        return "the second half is not a copy of the first half"
    if (first.sort(dim=-1).values.diff(dim=-1) == 0).any():
        return "a segment repeats a token"
    if batch > 1 and (first == first[:1]).all():
        return "every row holds the same segment"
    steps = first.diff(dim=-1)
    if batch >= 2 and seg_len >= 6 and ((steps > 0).all() or (steps < 0).all()):  # by chance: < 2 / 720^2
        return "every segment is sorted: the order of the tokens should be random too"
    return None


def _repeated_no_bos(tokenizer, batch, seg_len, seed=0):
    return repeated_tokens(tokenizer, batch, seg_len, seed, prepend_bos=False)


def _repeated_any_id(tokenizer, batch, seg_len, seed=0):
    generator = torch.Generator().manual_seed(seed)
    segment = torch.rand(batch, len(tokenizer), generator=generator).argsort(dim=-1)[:, :seg_len]
    bos = torch.full((batch, 1), tokenizer.bos_token_id)
    return torch.cat([bos, segment, segment], dim=-1)


def _repeated_with_replacement(tokenizer, batch, seg_len, seed=0):
    generator = torch.Generator().manual_seed(seed)
    ids = content_token_ids(tokenizer)
    segment = ids[torch.randint(len(ids), (batch, seg_len), generator=generator)]
    bos = torch.full((batch, 1), tokenizer.bos_token_id)
    return torch.cat([bos, segment, segment], dim=-1)


def _repeated_fresh_second(tokenizer, batch, seg_len, seed=0):
    first = repeated_tokens(tokenizer, batch, seg_len, seed)
    second = repeated_tokens(tokenizer, batch, seg_len, seed + 1)
    return torch.cat([first[:, : seg_len + 1], second[:, 1 : seg_len + 1]], dim=-1)


register(Exercise(
    id="ch03.repeated_tokens",
    title="Repeated random tokens: [BOS] + segment + segment",
    reference=_repeated_tokens,
    cases=_repeated_cases,
    validate=_validate_repeated,
    seed_arg="seed",
    mistakes=(
        Mistake("no BOS", _repeated_no_bos,
                "Start every row with tokenizer.bos_token_id: the model was trained on rows that begin "
                "with BOS, and the chapter's offsets count it."),
        Mistake("special tokens drawn", _repeated_any_id,
                "Draw only content tokens: leave out every id in tokenizer.all_special_ids (BOS, UNK), "
                "wherever they sit in the vocabulary."),
        Mistake("drawn with replacement", _repeated_with_replacement,
                "Draw each segment without replacement (e.g. the first seg_len entries of a random "
                "permutation), so every token of the second copy has exactly one earlier occurrence."),
        Mistake("second half drawn afresh", _repeated_fresh_second,
                "The second half must repeat the first half token for token: concatenate the same "
                "segment twice."),
    ),
))


# --- 2. per-token loss ---------------------------------------------------------------------------


def _loss_cases(seed: int = 0) -> list[Case]:
    g = torch.Generator().manual_seed(30 + seed)
    return [
        Case(args=(torch.randn(3, 7, 11, generator=g) * 2, torch.randint(11, (3, 7), generator=g)),
             label="3 rows of 7 tokens, vocabulary 11"),
        Case(args=(torch.randn(1, 2, 5, generator=g), torch.randint(5, (1, 2), generator=g)),
             label="one row of 2 tokens (edge)"),
        Case(args=(torch.randn(2, 9, 100, generator=g, dtype=torch.float64), torch.randint(100, (2, 9), generator=g)),
             label="float64 logits"),
    ]


def _loss_current_token(logits, tokens):
    return -logits[:, :-1].log_softmax(-1).gather(-1, tokens[:, :-1, None]).squeeze(-1)


def _loss_shifted_wrong_way(logits, tokens):
    return -logits[:, 1:].log_softmax(-1).gather(-1, tokens[:, :-1, None]).squeeze(-1)


def _loss_no_minus(logits, tokens):
    return logits[:, :-1].log_softmax(-1).gather(-1, tokens[:, 1:, None]).squeeze(-1)


register(Exercise(
    id="ch03.per_token_loss",
    title="Per-token loss",
    reference=circuits.per_token_loss,
    cases=_loss_cases,
    mistakes=(
        Mistake("scored against the current token", _loss_current_token,
                "The logits at position j predict token j + 1: pair logits[:, :-1] with tokens[:, 1:]."),
        Mistake("shifted the wrong way", _loss_shifted_wrong_way,
                "Drop the *last* position of the logits (it predicts past the end) and the *first* "
                "token (nothing predicts it), not the other way round."),
        Mistake("log-probability, not loss", _loss_no_minus,
                "Cross-entropy is the *negative* log-probability of the correct token: losses are >= 0."),
    ),
))


# --- 3. head detectors ------------------------------------------------------------------------------


def _prev_cases(seed: int = 0) -> list[Case]:
    g = torch.Generator().manual_seed(31 + seed)
    exact = torch.zeros(1, 1, 1, 5, 5)
    exact[..., 0, 0] = 1.0
    exact[..., torch.arange(1, 5), torch.arange(4)] = 1.0
    return [
        Case(args=(_patterns(g, 2, 3, 4, 9),), label="2 layers, 3 rows, 4 heads, 9 positions"),
        Case(args=(_patterns(g, 1, 1, 1, 2),), label="one head, 2 positions (edge)"),
        Case(args=(exact,), label="a perfect previous-token head (score 1)"),
    ]


def _prev_wrong_sign(patterns):
    return patterns.diagonal(offset=1, dim1=-2, dim2=-1).mean(dim=(1, -1))


def _prev_self(patterns):
    return patterns.diagonal(offset=0, dim1=-2, dim2=-1).mean(dim=(1, -1))


def _prev_over_all_positions(patterns):
    return patterns.diagonal(offset=-1, dim1=-2, dim2=-1).sum(-1).mean(1) / patterns.shape[-1]


register(Exercise(
    id="ch03.previous_token_scores",
    title="Previous-token score of every head",
    reference=induction.previous_token_scores,
    cases=_prev_cases,
    mistakes=(
        Mistake("diagonal above, not below", _prev_wrong_sign,
                "Keys before the query lie *below* the main diagonal of a (query, key) pattern: the "
                "previous token is diagonal(offset=-1), and everything above is masked to 0."),
        Mistake("attention to itself", _prev_self,
                "offset=0 is each token attending to itself; the previous token is one step back."),
        Mistake("averaged over all positions", _prev_over_all_positions,
                "Average over the queries that *have* a previous token (every position but the "
                "first), not over the whole sequence length."),
    ),
))


def _repeat_pattern_cases(seed: int = 0) -> list[Case]:
    """Patterns on [BOS] + 2 x seg (first), without BOS, and the shortest segment."""
    g = torch.Generator().manual_seed(32 + seed)
    return [
        Case(args=(_patterns(g, 2, 3, 4, 2 * 4 + 1), 4), label="[BOS] + 2 x 4 tokens; 2 layers, 3 rows, 4 heads"),
        Case(args=(_patterns(g, 1, 2, 2, 2 * 3), 3), label="2 x 3 tokens, no BOS"),
        Case(args=(_patterns(g, 1, 1, 1, 2 * 2 + 1), 2), label="[BOS] + 2 x 2 tokens (edge)"),
    ]


def _on_diagonal(patterns, offset, queries):
    """Mean over the batch and the chosen queries of attention `offset` keys back."""
    return patterns.diagonal(offset=-offset, dim1=-2, dim2=-1)[..., queries].mean(dim=(1, -1))


def _dup_induction_offset(patterns, seg_len):
    return _on_diagonal(patterns, seg_len - 1, slice(-seg_len, None))


def _dup_whole_diagonal(patterns, seg_len):
    return _on_diagonal(patterns, seg_len, slice(None))


def _dup_bos_in_offset(patterns, seg_len):
    return _on_diagonal(patterns, seg_len + 1, slice(-seg_len, None))


register(Exercise(
    id="ch03.duplicate_token_scores",
    title="Duplicate-token score of every head",
    reference=induction.duplicate_token_scores,
    cases=_repeat_pattern_cases,
    mistakes=(
        Mistake("induction offset", _dup_induction_offset,
                "That is the induction offset (seg_len - 1 back). The earlier copy of the *same* token "
                "is exactly seg_len positions back."),
        Mistake("whole diagonal", _dup_whole_diagonal,
                "Only queries in the second copy have an earlier duplicate: average over the last seg_len "
                "queries, not the whole diagonal (which starts inside the first copy, at BOS)."),
        Mistake("BOS counted in the offset", _dup_bos_in_offset,
                "BOS shifts both copies by one, so the distance between them is still seg_len, not seg_len + 1."),
    ),
))


def _ind_duplicate_offset(patterns, seg_len):
    return _on_diagonal(patterns, seg_len, slice(-seg_len, None))


def _ind_whole_diagonal(patterns, seg_len):
    return _on_diagonal(patterns, seg_len - 1, slice(None))


def _ind_first_half(patterns, seg_len):
    return _on_diagonal(patterns, seg_len - 1, slice(None, seg_len))


def _ind_mean_over_heads(patterns, seg_len):
    return patterns.diagonal(offset=-(seg_len - 1), dim1=-2, dim2=-1)[..., -seg_len:].mean(dim=(2, -1))


register(Exercise(
    id="ch03.induction_scores",
    title="Induction score of every head",
    reference=induction.induction_scores,
    cases=_repeat_pattern_cases,
    mistakes=(
        Mistake("duplicate-token offset", _ind_duplicate_offset,
                "Off by one: seg_len back is the earlier copy of the current token (duplicate-token). An "
                "induction head attends to the token *after* it: diagonal(offset=-(seg_len - 1))."),
        Mistake("whole diagonal", _ind_whole_diagonal,
                "Average only over queries in the second copy (the last seg_len positions); earlier "
                "queries on that diagonal have no previous occurrence to induct from."),
        Mistake("first half of the diagonal", _ind_first_half,
                "Use the *last* seg_len entries of the diagonal (queries in the second copy), not the first."),
        Mistake("averaged over heads", _ind_mean_over_heads,
                "Average over the batch and the queries (dims 1 and -1), keeping one score per layer and head."),
    ),
))


# --- 4. direct logit attribution ---------------------------------------------------------------------


def _dla_case(g: torch.Generator, layers: int, batch: int, pos: int, heads: int, label: str) -> Case:
    d_head, d_model, vocab = 3, 8, 11
    return Case(args=(torch.randn(layers, batch, pos, heads, d_head, generator=g),
                      torch.randn(layers, heads, d_head, d_model, generator=g),
                      torch.randn(d_model, vocab, generator=g),
                      torch.randint(vocab, (batch, pos), generator=g)), label=label)


def _dla_cases(seed: int = 0) -> list[Case]:
    g = torch.Generator().manual_seed(33 + seed)
    return [_dla_case(g, 2, 3, 6, 4, "2 layers, 3 rows, 6 positions, 4 heads"),
            _dla_case(g, 1, 1, 2, 1, "one head, one row of 2 tokens (edge)")]


def _dla_current_token(z, W_O, W_U, tokens):
    out = torch.einsum("lbphd,lhdm->lbphm", z[:, :, :-1], W_O)
    return torch.einsum("lbphm,mbp->lbph", out, W_U[:, tokens[:, :-1]])


def _dla_shifted_positions(z, W_O, W_U, tokens):
    out = torch.einsum("lbphd,lhdm->lbphm", z[:, :, 1:], W_O)
    return torch.einsum("lbphm,mbp->lbph", out, W_U[:, tokens[:, 1:]])


def _dla_heads_summed(z, W_O, W_U, tokens):
    out = torch.einsum("lbphd,lhdm->lbpm", z[:, :, :-1], W_O)
    return torch.einsum("lbpm,mbp->lbp", out, W_U[:, tokens[:, 1:]])


register(Exercise(
    id="ch03.head_logit_attribution",
    title="Direct logit attribution of every head",
    reference=circuits.head_logit_attribution,
    cases=_dla_cases,
    mistakes=(
        Mistake("current token, not the next", _dla_current_token,
                "Position j predicts token j + 1: project onto the unembedding of tokens[:, 1:]."),
        Mistake("positions shifted", _dla_shifted_positions,
                "Keep the heads' outputs at positions 0 .. pos-2 (z[:, :, :-1]) and shift the *tokens*: "
                "the output at position j is what predicts token j + 1."),
        Mistake("heads summed", _dla_heads_summed,
                "Keep the head axis: sum over d_head and d_model only, so each head gets its own attribution."),
    ),
))


# --- 5. ablation --------------------------------------------------------------------------------------


def _ablate_case(g: torch.Generator, copies: int, batch: int, mean: bool, label: str) -> Case:
    pos, heads, d_head = 5, 4, 3
    z = torch.randn(copies * batch, pos, heads, d_head, generator=g)
    ablate = torch.rand(copies, heads, generator=g) < 0.5
    ablate[0] = torch.tensor([True, False, False, True])
    replacement = torch.randn(pos, heads, d_head, generator=g) if mean else torch.zeros(pos, heads, d_head)
    return Case(args=(z, ablate, replacement), label=label)


def _ablate_cases(seed: int = 0) -> list[Case]:
    g = torch.Generator().manual_seed(34 + seed)
    return [_ablate_case(g, 3, 2, True, "3 copies of 2 rows, mean-ablation"),
            _ablate_case(g, 2, 3, False, "2 copies of 3 rows, zero-ablation"),
            _ablate_case(g, 1, 1, True, "one copy of one row (edge)")]


def _ablate_interleaved(z, ablate, replacement):
    copies = ablate.shape[0]
    z = z.unflatten(0, (-1, copies))
    return torch.where(ablate[None, :, None, :, None], replacement, z).flatten(0, 1)


def _ablate_inverted(z, ablate, replacement):
    copies = ablate.shape[0]
    z = z.unflatten(0, (copies, -1))
    return torch.where(ablate[:, None, None, :, None], z, replacement).flatten(0, 1)


def _ablate_always_zero(z, ablate, replacement):
    return circuits.ablate_z(z, ablate, torch.zeros_like(replacement))


register(Exercise(
    id="ch03.ablate_z",
    title="Ablate chosen heads, one set per copy of the batch",
    reference=circuits.ablate_z,
    cases=_ablate_cases,
    mistakes=(
        Mistake("copies interleaved", _ablate_interleaved,
                "tokens.repeat(copies, 1) stacks whole copies one after another (copy-major): row r "
                "belongs to copy r // batch, so unflatten the batch axis as (copies, batch)."),
        Mistake("mask inverted", _ablate_inverted,
                "Replace z where ablate is True and keep it where it is False, not the other way round."),
        Mistake("replacement ignored", _ablate_always_zero,
                "Use the given replacement (the mean z for mean-ablation), not zeros: it is zeros only "
                "for zero-ablation."),
    ),
))


# --- 6. OV circuit, copying score, composition -------------------------------------------------------------


def _ov_cases(seed: int = 0) -> list[Case]:
    g = torch.Generator().manual_seed(35 + seed)

    def weights(vocab: int, d_model: int, d_head: int, lead: tuple[int, ...]) -> tuple[Tensor, ...]:
        return (torch.randn(vocab, d_model, generator=g), torch.randn(*lead, d_model, d_head, generator=g),
                torch.randn(*lead, d_head, d_model, generator=g), torch.randn(d_model, vocab, generator=g))

    return [Case(args=weights(7, 6, 2, (2, 3)), label="2 layers x 3 heads, vocabulary 7"),
            Case(args=weights(5, 4, 4, (1, 1)), label="one head, d_head = d_model (edge)"),
            Case(args=weights(9, 6, 3, ()), label="a single head's matrices, no layer/head axes")]


def _ov_transposed(W_E, W_V, W_O, W_U):
    return circuits.ov_circuit(W_E, W_V, W_O, W_U).transpose(-1, -2)


def _ov_tied_unembedding(W_E, W_V, W_O, W_U):
    return circuits.ov_circuit(W_E, W_V, W_O, W_E.T)


register(Exercise(
    id="ch03.ov_circuit",
    title="Full OV circuit W_E W_V W_O W_U of every head",
    reference=circuits.ov_circuit,
    cases=_ov_cases,
    rtol=1e-4, atol=1e-4,
    mistakes=(
        Mistake("rows and columns swapped", _ov_transposed,
                "Rows index the token attended to (through W_E), columns the output logit (through W_U): "
                "multiply W_E @ W_V @ W_O @ W_U in that order, without transposing."),
        Mistake("embedding used as unembedding", _ov_tied_unembedding,
                "This model does not tie its embeddings: use W_U for the logits, not W_E transposed."),
    ),
))


def _copying_cases(seed: int = 0) -> list[Case]:
    g = torch.Generator().manual_seed(36 + seed)
    n = 8
    mixed = torch.randn(2, 3, n, n, generator=g) + torch.linspace(-1, 4, 6).view(2, 3, 1, 1) * torch.eye(n)
    shifted = torch.randn(1, 4, 5, 5, generator=g) * 0.1 + torch.eye(5).roll(1, dims=-1) * 3 - 0.5
    return [Case(args=(mixed,), label="2 x 3 circuits of 8 tokens, diagonals of varying strength"),
            Case(args=(shifted,), label="circuits that map each token to the next one"),
            Case(args=(torch.eye(4),), label="the identity, one matrix with no head axes (edge)"),
            Case(args=(torch.tensor([[1.0e-3, 1.1e-3, 0.0], [0.0, 2.0e-3, 1.9e-3], [5.0e-4, 0.0, 4.0e-4]]),),
                 label="small entries, each diagonal close to its row's largest (edge)")]


def _copying_wrong_axis(circuit):
    n = circuit.shape[-1]
    return (circuit.argmax(dim=-2) == torch.arange(n)).float().mean(dim=-1)


def _copying_positive_diagonal(circuit):
    return (circuit.diagonal(dim1=-2, dim2=-1) > 0).float().mean(dim=-1)


register(Exercise(
    id="ch03.copying_score",
    title="Copying score: fraction of tokens whose top output is themselves",
    reference=circuits.copying_score,
    cases=_copying_cases,
    mistakes=(
        Mistake("argmax over the wrong axis", _copying_wrong_axis,
                "For each *input* token (a row) find the output token with the largest entry: argmax "
                "over the last axis."),
        Mistake("positive diagonal", _copying_positive_diagonal,
                "A positive diagonal entry raises the token's own logit, but another logit may rise more: "
                "count a token only when its own logit is the row's largest."),
    ),
))


def _composition_cases(seed: int = 0) -> list[Case]:
    g = torch.Generator().manual_seed(37 + seed)

    def low_rank(n: int, d: int, r: int) -> Tensor:
        return torch.randn(n, d, r, generator=g) @ torch.randn(n, r, d, generator=g)

    return [Case(args=(low_rank(3, 6, 2), low_rank(2, 6, 2)), label="3 x 2 pairs of rank-2 matrices in d = 6"),
            Case(args=(torch.randn(2, 4, 4, generator=g) * 5, torch.randn(2, 4, 4, generator=g)),
                 label="full-rank matrices of different scales"),
            Case(args=(torch.randn(1, 3, 3, generator=g), torch.randn(1, 3, 3, generator=g)),
                 label="one pair (edge)")]


def _norms(W):
    return W.flatten(-2).norm(dim=-1)


def _composition_unnormalised(W_A, W_B):
    return torch.einsum("aij,bjk->abik", W_A, W_B).flatten(-2).norm(dim=-1)


def _composition_reversed(W_A, W_B):
    product = torch.einsum("bij,ajk->abik", W_B, W_A).flatten(-2).norm(dim=-1)
    return product / (_norms(W_A)[:, None] * _norms(W_B)[None, :])


def _composition_one_norm(W_A, W_B):
    return _composition_unnormalised(W_A, W_B) / _norms(W_A)[:, None]


register(Exercise(
    id="ch03.composition_scores",
    title="Composition scores of every pair of heads",
    reference=circuits.composition_scores,
    cases=_composition_cases,
    mistakes=(
        Mistake("not normalised", _composition_unnormalised,
                "Divide ||W_A W_B||_F by ||W_A||_F ||W_B||_F, or heads with large weights look composed."),
        Mistake("product in the wrong order", _composition_reversed,
                "The earlier head writes and the later one reads: in TransformerLens's row-vector "
                "convention that is W_A @ W_B, not W_B @ W_A."),
        Mistake("normalised by one norm", _composition_one_norm,
                "Normalise by *both* norms, ||W_A||_F and ||W_B||_F, so the score lies between 0 and 1."),
    ),
))
