"""Chapter 6 exercises: the IOI circuit (Wang et al. 2023; Miller et al. 2024).

Path patching, copying scores, knockouts and the design exercise run on the chapter's model,
ioi-4l (loaded once per process), on a handful of prompts, so each grades in about a second.
The other exercises work on tensors built from seeded generators.
"""

from __future__ import annotations

import functools
from functools import cache

import torch
from torch import Tensor

from mi_course import ioi_circuit as ref
from mi_course import patching
from mi_course.circuits import single_head_ablations
from mi_course.grading import Case, Exercise, Mistake, register
from mi_course.path_patching import head_mask, path_patch

N_LAYERS, N_HEADS = 4, 8


@cache
def _model():
    from mi_course.models import load_model

    return load_model("ioi-4l")


def _prompts(n: int, seed: int):
    from mi_course.data import ioi_grammar as grammar

    return grammar.ioi_prompts(n, seed)


def _metric(prompts) -> patching.Metric:
    return functools.partial(patching.logit_diff, position=prompts.positions["end"], correct=prompts.io,
                             wrong=prompts.s)


# --- 4. path patching ------------------------------------------------------------------------------

NAME_MOVERS = head_mask([(1, 0), (1, 1), (1, 5), (1, 6)], N_LAYERS, N_HEADS)


def _path_cases(seed: int = 0) -> list[Case]:
    model = _model()
    first, second, third = _prompts(6, 600 + seed), _prompts(5, 610 + seed), _prompts(4, 620 + seed)
    g = torch.Generator().manual_seed(630 + seed)
    sets = torch.rand(4, N_LAYERS, N_HEADS, generator=g) < 0.15
    sets[0] = head_mask([(0, 7)], N_LAYERS, N_HEADS)
    sets[1] = head_mask([(0, 0), (0, 7)], N_LAYERS, N_HEADS)
    receivers = head_mask([(2, 3), (3, 0), (3, 7)], N_LAYERS, N_HEADS)
    return [
        Case(args=(model, first.clean, first.corrupted, _metric(first), single_head_ablations(N_LAYERS, N_HEADS)),
             label="every head alone as a sender, to the logits (6 prompts)"),
        Case(args=(model, second.clean, second.corrupted, _metric(second), sets, NAME_MOVERS),
             label="4 sender sets (one head, two heads, random sets) to the name movers' queries (5 prompts)"),
        Case(args=(model, third.clean, third.corrupted, _metric(third), sets, receivers),
             kwargs={"receiver_input": "k", "freeze_mlps": True},
             label="sender sets to the keys of later heads, MLPs frozen (4 prompts)"),
    ]


def _senders_only(model, clean_tokens, corrupt_tokens, metric, senders, receivers=None, receiver_input="q",
                  freeze_mlps=False):
    """Activation patching of the senders: nothing else frozen."""
    names = [f"blocks.{layer}.attn.hook_z" for layer in range(N_LAYERS)]
    source = patching.cache_activations(model, corrupt_tokens, names)
    masks = {name: senders[:, layer][:, None, :, None] for layer, name in enumerate(names)}
    return patching.patch_sweep(model, clean_tokens, source, masks, metric)


def _receivers_frozen(model, clean_tokens, corrupt_tokens, metric, senders, receivers=None, receiver_input="q",
                      freeze_mlps=False):
    """The receivers' inputs frozen at their clean values along with the other heads."""
    if receivers is None:
        return path_patch(model, clean_tokens, corrupt_tokens, metric, senders, None, receiver_input, freeze_mlps)
    with torch.no_grad():
        clean = metric(model(clean_tokens)[None])
    return clean.expand(senders.shape[0]).clone()


def _mlps_always_frozen(model, clean_tokens, corrupt_tokens, metric, senders, receivers=None, receiver_input="q",
                        freeze_mlps=False):
    return path_patch(model, clean_tokens, corrupt_tokens, metric, senders, receivers, receiver_input, True)


def _last_run_frozen(model, clean_tokens, corrupt_tokens, metric, senders, receivers=None, receiver_input="q",
                     freeze_mlps=False):
    """The final run keeps every head but the receivers at its clean z (only the receivers' direct effect)."""
    if receivers is None:
        return path_patch(model, clean_tokens, corrupt_tokens, metric, senders, None, receiver_input, freeze_mlps)
    names = [f"blocks.{layer}.attn.hook_z" for layer in range(N_LAYERS)]
    inputs = [f"blocks.{layer}.attn.hook_{receiver_input}" for layer in range(N_LAYERS)]
    clean = patching.cache_activations(model, clean_tokens, names)
    corrupt = patching.cache_activations(model, corrupt_tokens, names)
    copies, recorded = senders.shape[0], {}

    def z_hook(layer, mask):
        def hook(z, hook):
            z = z.unflatten(0, (copies, -1))
            return torch.where(mask[:, None, None, :, None], clean[names[layer]][None], z).flatten(0, 1)
        return hook

    def freeze(layer):
        def hook(z, hook):
            out = torch.where(senders[:, layer][:, None, None, :, None], corrupt[names[layer]][None],
                              clean[names[layer]][None])
            return out.flatten(0, 1)
        return hook

    def record(layer):
        def hook(act, hook):
            recorded[layer] = act.clone()
        return hook

    def patch(layer):
        return lambda act, hook: torch.where(receivers[layer][None, :, None], recorded[layer], act)

    tokens = clean_tokens.repeat(copies, 1)
    mlps = [(f"blocks.{layer}.hook_mlp_out", None) for layer in range(N_LAYERS)] if freeze_mlps else []
    mlp_clean = patching.cache_activations(model, clean_tokens, [name for name, _ in mlps])
    mlp_hooks = [(name, lambda act, hook, name=name: mlp_clean[name].repeat(copies, 1, 1)) for name, _ in mlps]
    with torch.no_grad():
        model.run_with_hooks(tokens, fwd_hooks=[(names[l], freeze(l)) for l in range(N_LAYERS)] + mlp_hooks
                             + [(inputs[l], record(l)) for l in range(N_LAYERS)])
        others = (~receivers)[None].expand(copies, -1, -1)
        logits = model.run_with_hooks(tokens, fwd_hooks=[(inputs[l], patch(l)) for l in range(N_LAYERS)]
                                      + [(names[l], z_hook(l, others[:, l])) for l in range(N_LAYERS)])
    return metric(logits.unflatten(0, (copies, -1)))


register(Exercise(
    id="ch06.path_patch",
    title="Path patching, every sender set in one batch",
    reference=path_patch,
    cases=_path_cases,
    timeout_s=60.0,
    forbidden=("transformer_lens.patching.get_act_patch_direct_path",
               "transformer_lens.patching.get_act_patch_direct_path_all_sources",
               "mi_course.path_patching.path_patch"),
    handed_out=("mi_course.patching.cache_activations",),
    mistakes=(
        Mistake("other heads not frozen", _senders_only,
                "Freeze every head that is not a sender at its clean z: otherwise the sender's effect also flows "
                "through later heads, and you measure every path from the sender (activation patching), not one."),
        Mistake("receivers frozen too", _receivers_frozen,
                "Freeze the other heads' *outputs* (z), not the receivers' inputs: record the receivers' "
                "q/k/v in the run where the sender is patched, then patch those into a fresh clean run."),
        Mistake("MLPs frozen", _mlps_always_frozen,
                "Freeze the MLPs only when freeze_mlps=True: by default the MLPs recompute, so the path "
                "sender -> MLPs -> receiver counts as part of the direct route (the model's MLP2 relies on it)."),
        Mistake("last run frozen", _last_run_frozen,
                "In the final run only the receivers' inputs are patched; every other head recomputes, so "
                "the receivers' effect reaches the logits through later heads as well."),
    ),
))


# --- 5. head classes -------------------------------------------------------------------------------


def _patterns(generator: torch.Generator, layers: int, batch: int, heads: int, pos: int) -> Tensor:
    """Random causal attention patterns, shape (layer, batch, head, query, key)."""
    scores = torch.randn(layers, batch, heads, pos, pos, generator=generator) * 2
    future = torch.ones(pos, pos, dtype=torch.bool).triu(1)
    return scores.masked_fill(future, float("-inf")).softmax(dim=-1)


def _role_cases(seed: int = 0) -> list[Case]:
    g = torch.Generator().manual_seed(640 + seed)
    query = torch.randint(6, 9, (7,), generator=g)
    key = (torch.rand(7, generator=g) * query).long()
    absent = key.clone()
    absent[[1, 4]] = -1
    single_q, single_k = torch.tensor([5]), torch.tensor([2])
    return [
        Case(args=(_patterns(g, 3, 7, 4, 9), query, key), label="7 prompts of up to 9 positions, 3 layers x 4 heads"),
        Case(args=(_patterns(g, 2, 7, 3, 9), query, absent), label="the key role absent (-1) from 2 of 7 prompts"),
        Case(args=(_patterns(g, 1, 1, 2, 6), single_q, single_k), label="a single prompt (edge)"),
    ]


def _role_transposed(patterns, query, key):
    return ref.role_attention(patterns.transpose(-1, -2), query, key)


def _role_absent_kept(patterns, query, key):
    return patterns[:, torch.arange(len(query)), :, query, key].mean(0)


def _role_over_heads(patterns, query, key):
    return ref.role_attention(patterns, query, key).mean(-1, keepdim=True).expand(-1, patterns.shape[2]).clone()


register(Exercise(
    id="ch06.role_attention",
    title="Attention from one role to another, per head",
    reference=ref.role_attention,
    cases=_role_cases,
    mistakes=(
        Mistake("query and key swapped", _role_transposed,
                "patterns[..., q, k] is the attention *from* query position q *to* key position k: index the "
                "query on the second-to-last axis."),
        Mistake("absent roles kept", _role_absent_kept,
                "Leave out the prompts whose key is -1: Python reads index -1 as the last position, so they "
                "would count attention to the final token as attention to the missing name."),
        Mistake("averaged over heads", _role_over_heads,
                "Average over prompts only, so each head keeps its own score: shape (layer, head)."),
    ),
))


def _copying_cases(seed: int = 0) -> list[Case]:
    from mi_course.data import ioi_grammar as grammar

    g = torch.Generator().manual_seed(650 + seed)
    names = grammar.NAME_IDS[torch.randperm(len(grammar.NAME_IDS), generator=g)]
    return [
        Case(args=(_model(), names[:40]), label="40 of the 60 names, top 5"),
        Case(args=(_model(), names[:25]), kwargs={"top": 3}, label="25 names, top 3"),
    ]


def _copying_without(model, names, top=5, mlp0=True, final_ln=True):
    blocks, ln_f = model.original_model.transformer.h, model.original_model.transformer.ln_f
    with torch.no_grad():
        x = model.W_E[names]
        if mlp0:
            x = x + blocks[0].mlp(blocks[0].ln_2(x))
        values = torch.stack([blocks[layer].ln_1(x) for layer in range(N_LAYERS)])
        written = torch.einsum("lnm,lhmd,lhde->lhne", values, model.W_V, model.W_O)
        logits = (ln_f(written) if final_ln else written) @ model.W_U[:, names]
    own = torch.arange(len(names))[:, None]
    return (logits.topk(top, dim=-1).indices == own).any(-1).float().mean(-1)


register(Exercise(
    id="ch06.name_copying_scores",
    title="Wang et al.'s copying score of every head",
    reference=ref.name_copying_scores,
    cases=_copying_cases,
    timeout_s=60.0,
    mistakes=(
        Mistake("no MLP0", functools.partial(_copying_without, mlp0=False),
                "Pass the embedding through layer 0's MLP first (x + MLP0(LN(x))): in GPT-2-style models the "
                "raw embedding is not what later heads read as a token's identity."),
        Mistake("no final LayerNorm", functools.partial(_copying_without, final_ln=False),
                "Apply the final LayerNorm (ln_f) to what the head writes before the unembedding, as the model does."),
    ),
))


# --- 6. knockout and faithfulness ---------------------------------------------------------------------


def _knockout_cases(seed: int = 0) -> list[Case]:
    from mi_course.data import ioi_grammar as grammar

    model = _model()
    g = torch.Generator().manual_seed(660 + seed)
    keep = torch.rand(3, N_LAYERS, N_HEADS, generator=g) < 0.5
    keep[0] = True
    keep[1] = head_mask([(0, 0), (0, 7), (1, 0), (1, 1), (1, 5), (1, 6)], N_LAYERS, N_HEADS)
    cases = []
    for n, offset, ablation in ((8, 0, "mean"), (6, 1, "zero"), (6, 2, "resample")):
        prompts = _prompts(n, 670 + 10 * offset + seed)
        groups = torch.arange(n) % 5        # ioi_prompts cycles through its 5 structures
        abc = grammar.abc_tokens(prompts, seed)
        cases.append(Case(args=(model, prompts.clean, abc, groups, keep, _metric(prompts)),
                          kwargs={} if ablation == "mean" else {"ablation": ablation},
                          label=f"{n} prompts of 5 structures, 3 circuits, {ablation}-ablation"))
    return cases


def _knockout_clean_mean(model, tokens, reference_tokens, groups, keep, metric, ablation="mean"):
    return ref.knockout(model, tokens, tokens, groups, keep, metric, ablation)


def _knockout_pooled(model, tokens, reference_tokens, groups, keep, metric, ablation="mean"):
    return ref.knockout(model, tokens, reference_tokens, torch.zeros_like(groups), keep, metric, ablation)


def _knockout_inverted(model, tokens, reference_tokens, groups, keep, metric, ablation="mean"):
    return ref.knockout(model, tokens, reference_tokens, groups, ~keep, metric, ablation)


register(Exercise(
    id="ch06.knockout",
    title="Knock out every head outside a circuit, all circuits in one batch",
    reference=ref.knockout,
    cases=_knockout_cases,
    timeout_s=60.0,
    handed_out=("mi_course.patching.cache_activations", "mi_course.ioi_circuit.structure_groups"),
    mistakes=(
        Mistake("mean over the IOI prompts", _knockout_clean_mean,
                "Take the mean over reference_tokens (the ABC distribution), not over the prompts you evaluate: "
                "the IOI prompts' mean z still says which name is repeated."),
        Mistake("one mean for every template", _knockout_pooled,
                "Average within each group (same structure, so the same word at each position); one mean over "
                "all structures mixes names with places and verbs at the same position."),
        Mistake("circuit ablated instead", _knockout_inverted,
                "keep[v] marks the heads that stay: ablate every head where it is False."),
    ),
))


def _faith_cases(seed: int = 0) -> list[Case]:
    g = torch.Generator().manual_seed(680 + seed)
    model = torch.rand(6, generator=g) * 10 + 2
    empty = torch.randn(6, generator=g)
    circuit = empty + (model - empty) * torch.rand(6, generator=g) * 1.4
    return [
        Case(args=(circuit, model, empty), label="6 circuits, baselines of either sign"),
        Case(args=(torch.tensor(3.0), torch.tensor(4.0), torch.tensor(-2.0)), label="one circuit, negative baseline"),
    ]


register(Exercise(
    id="ch06.faithfulness",
    title="Faithfulness, normalised by the empty circuit",
    reference=ref.faithfulness,
    cases=_faith_cases,
    mistakes=(
        Mistake("no baseline", lambda circuit, model, empty: circuit / model,
                "Measure from the fully ablated model: F(C)/F(M) credits the circuit with whatever the ablation "
                "itself leaves (or takes away)."),
        Mistake("baseline in the numerator only", lambda circuit, model, empty: (circuit - empty) / model,
                "Subtract F(empty) in the denominator too, so the whole model scores exactly 1."),
    ),
))


# --- optional: where the circuit fails ----------------------------------------------------------------

FAIL_ACCURACY = 0.5
MIN_DISTINCT = 16


def _fail_cases(seed: int = 0) -> list[Case]:
    return [Case(args=(32,), label="32 prompts"), Case(args=(20,), label="20 prompts")]


def _validate_failing(case: Case, out: object) -> str | None:
    from mi_course.data import ioi_grammar as grammar

    (n,) = case.args
    if not (isinstance(out, tuple) and len(out) == 4 and all(isinstance(t, Tensor) for t in out)):
        return "return a tuple of four tensors (tokens, end, io, s)"
    tokens, end, io, s = (t.cpu().long() for t in out)
    if tokens.ndim != 2 or tokens.shape[0] != n or any(t.shape != (n,) for t in (end, io, s)):
        return f"tokens should have shape ({n}, pos) and end, io, s shape ({n},)"
    if tokens.min() < 0 or tokens.max() >= len(grammar.VOCAB) or (end < 1).any() or (end >= tokens.shape[1]).any():
        return "token ids must be ioi-4l's (0..vocab-1) and end a position inside each row"
    names = set(grammar.NAME_IDS.tolist())
    if not all(i in names and j in names for i, j in zip(io.tolist(), s.tolist())) or (io == s).any():
        return "io and s must be two different names of the language"
    upto = torch.arange(tokens.shape[1])[None] <= end[:, None]
    io_count = ((tokens == io[:, None]) & upto).sum(1)
    s_count = ((tokens == s[:, None]) & upto).sum(1)
    if (io_count != 1).any() or (s_count < 2).any():
        return "in every prompt IO must be mentioned exactly once and S at least twice up to END: still an IOI task"
    late = tuple(ref.word_shapes(ref.late_io_prompts(1)[0])[0])
    if sum(shape == late for shape in ref.word_shapes(tokens)) > n / 2:
        return "that is late_io_prompts' structure, which the chapter already showed: find another one"
    if len({tuple(row) for row in tokens.tolist()}) < min(MIN_DISTINCT, n):
        return f"use at least {MIN_DISTINCT} different prompts, not one prompt repeated"
    with torch.no_grad():
        logits = _model()(tokens)[torch.arange(n), end]
    accuracy = (logits.gather(-1, io[:, None]) > logits.gather(-1, s[:, None])).float().mean().item()
    if accuracy > FAIL_ACCURACY:
        return f"the model still prefers IO over S on {accuracy:.0%} of these prompts (at most {FAIL_ACCURACY:.0%} wanted)"
    return None


IO_FIRST_IN_MIDDLE = "S and C were at the P . IO met S at the P . C gave D O to"


def _fail_reference(n: int):
    return ref.template_prompts(IO_FIRST_IN_MIDDLE, n)


def _fail_late_reused(n: int):
    return ref.late_io_prompts(n)


def _fail_roles_swapped(n: int):
    tokens, end, io, s = ref.late_io_prompts(n)
    return tokens, end, s, io


def _fail_heldout_structures(n: int):
    prompts = _prompts(n, 0)
    return prompts.clean, prompts.positions["end"], prompts.io, prompts.s


register(Exercise(
    id="ch06.failing_prompts",
    title="(Optional) Design IOI prompts on which the model fails",
    reference=_fail_reference,
    cases=_fail_cases,
    validate=_validate_failing,
    timeout_s=60.0,
    handed_out=("mi_course.ioi_circuit.template_prompts",),
    mistakes=(
        Mistake("late_io_prompts reused", _fail_late_reused,
                "That is the structure the chapter already showed failing; change where and how IO and S "
                "appear (ioi_circuit.template_prompts fills any template for you)."),
        Mistake("IO and S swapped", _fail_roles_swapped,
                "The answer must still be the name mentioned once: make the model fail on a real IOI prompt, not "
                "on one whose 'IO' is the repeated name."),
        Mistake("the held-out structures", _fail_heldout_structures,
                "The model generalises to these; look for a structure its shortcut cannot handle (the model card "
                "describes a positional route)."),
    ),
))


# --- optional: a smaller faithful circuit ---------------------------------------------------------------

SMALL_TOLERANCE = 0.15


def _small_cases(seed: int = 0) -> list[Case]:
    from mi_course.data import ioi_grammar as grammar

    cases = []
    for offset, max_heads in ((0, 6), (1, 7)):
        prompts = _prompts(40, 690 + 2 * seed + offset)
        cases.append(Case(args=(_model(), prompts, grammar.abc_tokens(prompts, seed + offset), max_heads),
                          label=f"40 held-out prompts, at most {max_heads} heads"))
    return cases


def _validate_small(case: Case, out: object) -> str | None:
    model, prompts, abc, max_heads = case.args
    if not isinstance(out, Tensor) or out.dtype != torch.bool or tuple(out.shape) != (N_LAYERS, N_HEADS):
        return f"return a torch.bool mask of shape ({N_LAYERS}, {N_HEADS}), True for the circuit's heads"
    if int(out.sum()) > max_heads:
        return f"the circuit has {int(out.sum())} heads; at most max_heads = {max_heads} are allowed"
    keep = torch.stack([torch.ones_like(out), torch.zeros_like(out), out.cpu()])
    full, empty, circuit = ref.knockout(model, prompts.clean, abc, ref.structure_groups(prompts), keep, _metric(prompts)).cpu()
    score = ref.faithfulness(circuit, full, empty).item()
    if abs(score - 1) > SMALL_TOLERANCE:
        return (f"faithfulness {score:.2f} under mean-ablation over the ABC prompts; between {1 - SMALL_TOLERANCE:.2f} "
                f"and {1 + SMALL_TOLERANCE:.2f} wanted")
    return None


def _small_ten_heads(model, prompts, abc, max_heads):
    return head_mask([(0, 0), (0, 2), (0, 3), (0, 4), (0, 7), (1, 0), (1, 1), (1, 5), (1, 6), (1, 7)], N_LAYERS, N_HEADS)


def _small_movers(model, prompts, abc, max_heads):
    return head_mask([(0, 7), (1, 0), (1, 1), (1, 5), (1, 6), (1, 7)], N_LAYERS, N_HEADS)


register(Exercise(
    id="ch06.faithful_heads",
    title="(Optional) Design a smaller circuit that is at least as faithful",
    reference=ref.faithful_heads,
    cases=_small_cases,
    validate=_validate_small,
    timeout_s=60.0,
    handed_out=("mi_course.ioi_circuit.structure_groups", "mi_course.patching.logit_diff"),
    mistakes=(
        Mistake("the ten-head circuit", _small_ten_heads,
                "That is section 6's circuit: find one with at most max_heads heads."),
        Mistake("L0H7 and the name movers", _small_movers,
                "L0H7 with the name movers keeps only about half of the logit difference: which heads does "
                "mean-ablation hurt most on their own?"),
    ),
))
