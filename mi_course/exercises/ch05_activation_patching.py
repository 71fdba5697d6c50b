"""Chapter 5 exercises: activation patching (Meng et al. 2022; Wang et al. 2023; Zhang & Nanda
2023; Heimersheim & Nanda 2024; Nanda 2023).

The metric, the toy circuit and the tracing noise are graded on tensors built from `seed`. The
patching and attribution exercises need real models: the two shipped ones the chapter uses,
loaded once per session, on small batches drawn with `seed`. The optional design exercise is
graded by a validator that runs the experiment the learner designed.
"""

from __future__ import annotations

import copy
import functools
from functools import cache

import torch
from torch import Tensor

from mi_course import patching
from mi_course import patching_steps as steps
from mi_course import toy_circuits as toy
from mi_course.grading import Case, Exercise, Mistake, register

# --- shared inputs -------------------------------------------------------------------------------


@cache
def _pristine_models() -> tuple:
    """The chapter's two models (attn-only-2l, facts-4l), loaded once per session and never run:
    cases get deep copies (`_fresh_model`)."""
    from mi_course.models import load_model

    return load_model("attn-only-2l", device="cpu"), load_model("facts-4l", device="cpu")


@cache
def _validator_model():
    """attn-only-2l for the design validator, which runs it without gradients (never copied)."""
    from mi_course.models import load_model

    return load_model("attn-only-2l", device="cpu")


def _fresh_model(index: int):
    """A fresh copy of model `index` (0: attn-only-2l, 1: facts-4l). A forward pass with
    gradients leaves tensors with a graph inside a bridge (which then cannot be deep-copied, as
    grading copies its inputs), so no case shares a model that an answer has run."""
    return copy.deepcopy(_pristine_models()[index])


def _induction_case(seed: int, batch: int, seg_len: int) -> tuple:
    """attn-only-2l on repeated tokens, corrupted by changing the answer's earlier occurrence;
    metric: logit difference of the clean vs the corrupted answer at the query."""
    model = _fresh_model(0)
    clean, query = steps.induction_prompt(model.tokenizer, batch, seg_len, seed)
    new = steps.replacements(model.tokenizer, clean, seed + 1)
    corrupt = steps.value_corruption(clean, seg_len, query, new)
    metric = functools.partial(patching.logit_diff, position=torch.full((batch,), query),
                               correct=clean[:, steps.answer_position(seg_len, query)], wrong=new)
    return model, clean, corrupt, metric


def _facts_case(seed: int, batch: int) -> tuple:
    """facts-4l on subject swaps ("ada moss lives in" vs "ben rook lives in"); metric: logit
    difference of the clean vs the corrupted subject's object."""
    from mi_course.data import facts

    model = _fresh_model(1)
    clean, corrupt = facts.swap_pairs(batch, seed=seed)
    metric = functools.partial(patching.logit_diff, position=clean.final, correct=clean.answer, wrong=corrupt.answer)
    return model, clean.tokens, corrupt.tokens, metric


def _model_cases(seed: int = 0) -> list[Case]:
    return [
        Case(args=_facts_case(300 + seed, 4), label="facts-4l, 4 subject swaps (prompts of different lengths)"),
        Case(args=_induction_case(310 + seed, 3, 8), label="attn-only-2l, 3 repeated sequences of 8 tokens"),
        Case(args=_facts_case(320 + seed, 1), label="facts-4l, a single pair (edge)"),
    ]


# --- 1. the normalised metric ----------------------------------------------------------------------


def _metric_cases(seed: int = 0) -> list[Case]:
    g = torch.Generator().manual_seed(5000 + seed)

    def case(leading: tuple[int, ...], batch: int, pos: int, vocab: int, label: str) -> Case:
        logits = torch.randn(*leading, batch, pos, vocab, generator=g) * 3
        position = torch.randint(1, pos - 1, (batch,), generator=g)      # never the last position
        correct, wrong = torch.randperm(vocab, generator=g)[: 2 * batch].view(2, batch)
        clean, corrupt = (torch.randn(2, generator=g) * 2 + torch.tensor([2.0, -1.0])).tolist()
        return Case(args=(logits, position, correct, wrong, clean, corrupt), label=label)

    return [
        case((), 4, 6, 10, "one run: 4 prompts of 6 tokens, vocabulary 10"),
        case((5,), 3, 5, 8, "5 patched variants of 3 prompts (a leading variant axis)"),
        case((2, 3), 1, 4, 6, "a 2 x 3 grid of variants of a single prompt (edge)"),
    ]


def _metric_wrong_way(logits, position, correct, wrong, clean, corrupt):
    return patching.normalise(patching.logit_diff(logits, position, correct, wrong), corrupt, clean)


def _metric_last_position(logits, position, correct, wrong, clean, corrupt):
    last = torch.full_like(position, logits.shape[-2] - 1)
    return patching.normalise(patching.logit_diff(logits, last, correct, wrong), clean, corrupt)


def _metric_swapped_answers(logits, position, correct, wrong, clean, corrupt):
    return patching.normalise(patching.logit_diff(logits, position, wrong, correct), clean, corrupt)


def _metric_ratio(logits, position, correct, wrong, clean, corrupt):
    return patching.logit_diff(logits, position, correct, wrong) / clean


register(Exercise(
    id="ch05.normalised_logit_diff",
    title="The normalised logit-difference metric",
    reference=steps.normalised_logit_diff,
    cases=_metric_cases,
    mistakes=(
        Mistake("normalised the wrong way round", _metric_wrong_way,
                "The corrupted run must score 0 and the clean run 1: subtract `corrupt` and divide by "
                "(clean - corrupt)."),
        Mistake("last position instead of `position`", _metric_last_position,
                "Read the logits at each prompt's own `position` (prompts are right-padded), not at the "
                "last position of the tensor."),
        Mistake("answers swapped", _metric_swapped_answers,
                "The logit difference is logit(correct) - logit(wrong), in that order."),
        Mistake("divided by the clean value only", _metric_ratio,
                "Dividing by the clean value makes 0 mean 'logits equal', not 'as corrupted': subtract "
                "the corrupted value first, then divide by the gap between the two runs."),
    ),
))


# --- 2. every residual-stream site in one stacked batch ---------------------------------------------


def _resid_noising(model, clean_tokens, corrupt_tokens, metric):
    return patching.resid_by_pos(model, clean_tokens, corrupt_tokens, metric, direction="noising")


def _resid_clean_into_clean(model, clean_tokens, corrupt_tokens, metric):
    return patching.resid_by_pos(model, clean_tokens, clean_tokens, metric)


def _resid_post(model, clean_tokens, corrupt_tokens, metric):
    return patching.resid_by_pos(model, clean_tokens, corrupt_tokens, metric, stage="resid_post")


register(Exercise(
    id="ch05.patch_resid_by_pos",
    title="Denoise the residual stream at every (layer, position) in one stacked batch",
    reference=steps.patch_resid_by_pos,
    cases=_model_cases,
    timeout_s=60.0,
    forbidden=(
        "transformer_lens.patching.get_act_patch_resid_pre",
        "transformer_lens.patching.get_act_patch_block_every",
        "transformer_lens.patching.generic_activation_patch",
        "mi_course.patching.resid_by_pos",
        "mi_course.patching.every_sublayer",
        "mi_course.patching.patch_sweep",
    ),
    mistakes=(
        Mistake("noising instead of denoising", _resid_noising,
                "Denoising runs the *corrupted* tokens and copies in activations cached on the *clean* "
                "run; you ran the clean tokens with corrupted activations (noising)."),
        Mistake("clean patched into clean", _resid_clean_into_clean,
                "Every site scores the clean value: the run you patch must be the corrupted one, and the "
                "activations you copy in the clean ones."),
        Mistake("resid_post instead of resid_pre", _resid_post,
                "Patch `blocks.{L}.hook_resid_pre`, the residual stream *entering* block L (row 0 is the "
                "embeddings), not the stream leaving it."),
    ),
))


# --- 3. noising and denoising a toy circuit ----------------------------------------------------------


def _toy_cases(seed: int = 0) -> list[Case]:
    g = torch.Generator().manual_seed(5200 + seed)
    chapter = toy.or_and_circuit()
    random_circuit = toy.ToyCircuit(torch.randn(6, 3, generator=g),
                                    (("or", (0, 1, 2)), ("and", (3, 4)), ("single", (5,))))
    single = toy.ToyCircuit(torch.randn(2, 2, generator=g), (("and", (0, 1)),))
    return [
        Case(args=(chapter, torch.ones(3, 2), torch.zeros(3, 2)), label="the chapter's OR/AND circuit, bits 1,1 vs 0,0"),
        Case(args=(random_circuit, torch.rand(4, 3, generator=g) + 1, torch.rand(4, 3, generator=g) - 1),
             label="a random circuit: OR of 3 nodes, AND of 2, one single node; 4 inputs"),
        Case(args=(single, torch.rand(1, 2, generator=g) + 1, torch.rand(1, 2, generator=g) - 1),
             label="one AND gate, a single input (edge)"),
    ]


def _toy_clean_into_clean(circuit, clean, corrupt):
    return toy.noise_and_denoise(circuit, clean, corrupt) * torch.tensor([[1.0], [0.0]]) + torch.tensor([[0.0], [1.0]])


def _toy_denoising_twice(circuit, clean, corrupt):
    return toy.noise_and_denoise(circuit, clean, corrupt)[0].expand(2, -1).clone()


def _toy_noising_as_drop(circuit, clean, corrupt):
    both = toy.noise_and_denoise(circuit, clean, corrupt)
    return torch.stack([both[0], 1 - both[1]])


def _toy_raw(circuit, clean, corrupt):
    both = toy.noise_and_denoise(circuit, clean, corrupt)
    clean_value, corrupt_value = circuit.output(circuit.nodes(clean)), circuit.output(circuit.nodes(corrupt))
    return both * (clean_value - corrupt_value) + corrupt_value


register(Exercise(
    id="ch05.noise_and_denoise",
    title="Noising and denoising every node of a toy circuit",
    reference=toy.noise_and_denoise,
    cases=_toy_cases,
    mistakes=(
        Mistake("noising patched clean into clean", _toy_clean_into_clean,
                "Every noising value is 1: noising runs the clean input and replaces one node by its value "
                "on the *corrupted* input."),
        Mistake("denoising in both rows", _toy_denoising_twice,
                "Row 1 repeats row 0: for noising swap the roles, run the clean nodes and take node i "
                "from the corrupted run."),
        Mistake("noising reported as a drop", _toy_noising_as_drop,
                "Both rows use the same formula, (patched - corrupt) / (clean - corrupt); a noising value "
                "of 1 means patching that node changed nothing."),
        Mistake("not normalised", _toy_raw,
                "Normalise: subtract the corrupted run's output and divide by (clean - corrupt)."),
    ),
))


# --- 4. causal tracing: the noise --------------------------------------------------------------------


def _noise_cases(seed: int = 0) -> list[Case]:
    g = torch.Generator().manual_seed(5300 + seed)
    vocab, d_model = 16, 6
    # Name tokens (ids < 6) have larger embeddings than the rest, as subject tokens often do.
    W_E = torch.randn(vocab, d_model, generator=g) * torch.where(torch.arange(vocab) < 6, 2.0, 0.5)[:, None]

    def prompts(batch: int, pos: int, start: int, length: int) -> tuple[Tensor, Tensor]:
        tokens = torch.randint(6, vocab, (batch, pos), generator=g)
        mask = torch.zeros(batch, pos, dtype=torch.bool)
        mask[:, start : start + length] = True
        tokens[mask] = torch.randint(0, 6, (int(mask.sum()),), generator=g)
        return tokens, mask

    return [
        Case(args=(W_E, *prompts(3, 7, 2, 2)), kwargs={"seed": seed + 1}, label="3 prompts, 2-token subjects at 2-3"),
        Case(args=(W_E, *prompts(2, 6, 1, 3)), kwargs={"scale": 2.0, "samples": 3, "seed": seed + 2},
             label="3-token subjects, scale 2, 3 samples"),
        Case(args=(W_E, *prompts(1, 4, 1, 2)), kwargs={"samples": 1, "seed": seed + 3}, label="one prompt, one sample (edge)"),
    ]


def _noise_with_std(W_E, tokens, where, scale, samples, seed, std):
    """The reference's draw at the positions `where`, with `std` in place of the subject tokens' std."""
    return steps.subject_noise(W_E, tokens, where, scale, samples, seed) * (std / W_E[tokens[where]].std())


def _noise_whole_embedding(W_E, tokens, subject_mask, scale=3.0, samples=4, seed=0):
    return _noise_with_std(W_E, tokens, subject_mask, scale, samples, seed, W_E.std())


def _noise_prompt_std(W_E, tokens, subject_mask, scale=3.0, samples=4, seed=0):
    return _noise_with_std(W_E, tokens, subject_mask, scale, samples, seed, W_E[tokens].std())


def _noise_everywhere(W_E, tokens, subject_mask, scale=3.0, samples=4, seed=0):
    everywhere = torch.ones_like(subject_mask)
    return _noise_with_std(W_E, tokens, everywhere, scale, samples, seed, W_E[tokens[subject_mask]].std())


def _noise_batch_major(W_E, tokens, subject_mask, scale=3.0, samples=4, seed=0):
    noise = steps.subject_noise(W_E, tokens, subject_mask, scale, samples, seed)
    return noise.unflatten(0, (samples, -1)).transpose(0, 1).flatten(0, 1)


register(Exercise(
    id="ch05.subject_noise",
    title="Causal tracing's corruption: noise on the subject embeddings",
    reference=steps.subject_noise,
    cases=_noise_cases,
    seed_arg="seed",
    mistakes=(
        Mistake("std of the whole embedding matrix", _noise_whole_embedding,
                "Scale by the std of the *subject tokens'* embeddings (the rows of W_E of the tokens where "
                "subject_mask is True), not of the whole W_E."),
        Mistake("std over every prompt token", _noise_prompt_std,
                "Only the subject positions count for the std: index W_E with tokens[subject_mask]."),
        Mistake("noise at every position", _noise_everywhere,
                "Zero the noise outside the subject: only the subject's embeddings are corrupted."),
        Mistake("batch-major rows", _noise_batch_major,
                "Rows are sample-major: row s * batch + b is sample s of prompt b (flatten the "
                "[samples, batch, ...] draw as it is)."),
    ),
))


# --- 5. attribution patching for every head ------------------------------------------------------------


def _z_names(model) -> list[str]:
    return [patching.head_hook_name(layer, "z") for layer in range(model.cfg.n_layers)]


def _attribution_sign_flipped(model, clean_tokens, corrupt_tokens, metric):
    return -patching.attribution_every_head(model, clean_tokens, corrupt_tokens, metric)


def _attribution_clean_gradient(model, clean_tokens, corrupt_tokens, metric):
    """(a_clean - a_corrupt) times the gradient taken on the *clean* run."""
    scores = patching.attribution(model, corrupt_tokens, clean_tokens, metric, _z_names(model))
    return -torch.stack([scores[name].sum((0, 2)) for name in _z_names(model)])


register(Exercise(
    id="ch05.attribution_heads",
    title="Attribution patching: every head's denoising effect from one backward pass",
    reference=patching.attribution_every_head,
    cases=_model_cases,
    timeout_s=60.0,
    forbidden=(
        "mi_course.patching.attribution",
        "mi_course.patching.attribution_every_head",
        "mi_course.patching.every_head",
        "transformer_lens.patching.get_act_patch_attn_head_out_all_pos",
    ),
    mistakes=(
        Mistake("sign flipped", _attribution_sign_flipped,
                "Denoising moves the activation from a_corrupt to a_clean: the estimate is "
                "(a_clean - a_corrupt) . gradient, not the reverse."),
        Mistake("gradient on the clean run", _attribution_clean_gradient,
                "Take the gradient of the metric on the *corrupted* run: the estimate linearises the "
                "corrupted run around its own activations."),
    ),
))


# --- 6. optional: design a corruption that localises to the previous-token head ------------------------

DESIGN_SEG = 25
DESIGN_RECOVERY = 0.8     # one layer-0 head must restore this much of the clean metric
DESIGN_GAP = 0.5          # and the corruption must remove at least this fraction of it


def _design_cases(seed: int = 0) -> list[Case]:
    model = _pristine_models()[0]
    return [
        Case(args=(steps.induction_prompt(model.tokenizer, 8, DESIGN_SEG, 330 + seed)[0], DESIGN_SEG,
                   2 * DESIGN_SEG - 3), label=f"8 repeated sequences of {DESIGN_SEG} tokens, query at {2 * DESIGN_SEG - 3}"),
        Case(args=(steps.induction_prompt(model.tokenizer, 4, 20, 340 + seed)[0], 20, 32),
             label="4 repeated sequences of 20 tokens, query at 32"),
    ]


def _validate_design(case: Case, out: object) -> str | None:
    clean, seg_len, query = case.args
    model = _validator_model()
    if not isinstance(out, Tensor) or out.dtype != torch.long or out.shape != clean.shape:
        return f"return token ids: a torch.long tensor of the clean tokens' shape {tuple(clean.shape)}"
    if out.min() < 0 or out.max() >= model.cfg.d_vocab:
        return f"every token id must lie in 0..{model.cfg.d_vocab - 1}"
    if not torch.equal(out[:, query - 1 :], clean[:, query - 1 :]):
        return "keep the tokens from the one before the query onwards as they are: the query must still ask for the same answer"
    position = torch.full((clean.shape[0],), query)
    metric = functools.partial(steps.centred_logit, position=position,
                               answer=clean[:, steps.answer_position(seg_len, query)])
    with torch.no_grad():
        clean_value, corrupt_value = (metric(model(tokens)[None])[0] for tokens in (clean, out))
    if clean_value - corrupt_value < DESIGN_GAP * clean_value:
        return (f"the corruption removes only {(1 - corrupt_value / clean_value).item():.0%} of the clean metric; "
                f"it must remove at least {DESIGN_GAP:.0%}")
    recovered = patching.normalise(patching.every_head(model, clean, out, metric), clean_value, corrupt_value)
    best = recovered[0].max().item()
    if best < DESIGN_RECOVERY:
        return (f"restoring one layer-0 head's output recovers at most {best:.2f} of the gap; the corruption must "
                f"make a single layer-0 head recover at least {DESIGN_RECOVERY}")
    return None


def _design_value(clean, seg_len, query):
    model = _validator_model()
    return steps.value_corruption(clean, seg_len, query, steps.replacements(model.tokenizer, clean, 0))


def _design_first_copy(clean, seg_len, query):
    return torch.cat([clean[:, :1], clean[:, 1 : 1 + seg_len].roll(1, 0), clean[:, 1 + seg_len :]], 1)


register(Exercise(
    id="ch05.design_key_corruption",
    title="Optional: design a corruption that localises to the previous-token head",
    reference=steps.key_corruption,
    cases=_design_cases,
    validate=_validate_design,
    timeout_s=60.0,
    mistakes=(
        Mistake("corrupting what is copied", _design_value,
                "Changing the earlier copy of the answer corrupts what the induction head *copies*; only "
                "layer-1 values restore it. Corrupt what the induction head *looks for* instead."),
        Mistake("corrupting the whole first copy", _design_first_copy,
                "Replacing the whole first copy changes what is looked for and what is copied at once; no "
                "single layer-0 head can restore both. Change less."),
    ),
))
