"""Chapter 6's checks accept correct answers written differently from the reference, their cases
follow the seed convention, and the chapter's path patching equals TransformerLens's exact edge
patch. (tests/test_exercises.py proves for every exercise that the reference passes, each known
mistake is rejected with its hint and the stub is not implemented.)"""

import functools

import pytest
import torch

from mi_course import patching
from mi_course.data import ioi_grammar as grammar
from mi_course.grading import get_exercise, grade
from mi_course.path_patching import head_mask, path_patch

CH06 = ["path_patch", "role_attention", "name_copying_scores", "knockout", "faithfulness", "failing_prompts"]


def _role_with_loop(patterns, query, key):
    """Prompt by prompt, then a masked mean: slow but right."""
    rows = [patterns[:, b, :, query[b], key[b]] for b in range(len(query)) if key[b] >= 0]
    return torch.stack(rows).mean(0)


def _knockout_with_loop(model, tokens, reference_tokens, groups, keep, metric, ablation="mean"):
    """One forward pass per variant, the group means by a loop over groups."""
    from mi_course.patching import cache_activations

    names = [f"blocks.{layer}.attn.hook_z" for layer in range(model.cfg.n_layers)]
    reference = cache_activations(model, reference_tokens, names)
    if ablation == "mean":
        for name, z in reference.items():
            out = z.clone()
            for g in groups.unique():
                out[groups == g] = z[groups == g].mean(0)
            reference[name] = out
    elif ablation == "zero":
        reference = {name: torch.zeros_like(z) for name, z in reference.items()}
    values = []
    with torch.no_grad():
        for mask in keep:
            hooks = [(name, lambda z, hook, l=l: torch.where(~mask[l][None, None, :, None], reference[names[l]], z))
                     for l, name in enumerate(names)]
            values.append(metric(model.run_with_hooks(tokens, fwd_hooks=hooks)[None])[0])
    return torch.stack(values)


def _faithfulness_rearranged(circuit, model, empty):
    return 1 - (model - circuit) / (model - empty)


@pytest.mark.parametrize("exercise_id,answer", [
    ("ch06.role_attention", _role_with_loop),
    ("ch06.knockout", _knockout_with_loop),
    ("ch06.faithfulness", _faithfulness_rearranged),
])
def test_a_different_correct_answer_passes(exercise_id, answer):
    result = grade(get_exercise(exercise_id), answer)
    assert result.passed, result.message


@pytest.mark.parametrize("name", ["role_attention", "faithfulness", "knockout", "path_patch"])
def test_cases_are_built_from_the_seed(name):
    exercise = get_exercise(f"ch06.{name}")
    first, again, other = exercise.cases(seed=0), exercise.cases(seed=0), exercise.cases(seed=5)
    assert len(first) >= 2 and [c.label for c in first] == [c.label for c in again]

    def tensors(cases):
        return [a for c in cases for a in (*c.args, *c.kwargs.values()) if isinstance(a, torch.Tensor)]

    assert all(torch.equal(a, b) for a, b in zip(tensors(first), tensors(again)))
    assert any(not torch.equal(a, b) for a, b in zip(tensors(first), tensors(other)))


@pytest.fixture(scope="module")
def model():
    from mi_course import load_model

    return load_model("ioi-4l")


def test_path_patch_equals_transformer_lens_direct_path(model):
    """With MLPs frozen and the runs swapped (the corrupted run receives the clean sender), one
    receiver's entry is TransformerLens's exact edge patch A -> B."""
    from transformer_lens import patching as tl_patching

    p = grammar.ioi_prompts(12, seed=3)
    metric = functools.partial(patching.logit_diff, position=p.positions["end"], correct=p.io, wrong=p.s)
    _, clean_cache = model.run_with_cache(p.clean)
    _, corrupt_cache = model.run_with_cache(p.corrupted)
    theirs = tl_patching.get_act_patch_direct_path(model, p.corrupted, clean_cache, corrupt_cache, metric, 0, 7, "q",
                                                   verbose=False)
    sender = head_mask([(0, 7)], 4, 8)[None]
    for layer, head in [(1, 0), (1, 5), (2, 3)]:
        ours = path_patch(model, p.corrupted, p.clean, metric, sender, head_mask([(layer, head)], 4, 8), "q",
                          freeze_mlps=True)
        assert torch.allclose(ours[0], theirs[layer, head], atol=1e-4), (layer, head, ours, theirs[layer, head])


def test_path_patch_without_receivers_and_nothing_frozen_is_activation_patching(model):
    """A sender in the last layer reaches the logits only directly, so path and activation patching agree."""
    p = grammar.ioi_prompts(10, seed=4)
    metric = functools.partial(patching.logit_diff, position=p.positions["end"], correct=p.io, wrong=p.s)
    last_layer = torch.zeros(8, 4, 8, dtype=torch.bool)
    last_layer[torch.arange(8), 3, torch.arange(8)] = True
    ours = path_patch(model, p.clean, p.corrupted, metric, last_layer)
    theirs = patching.every_head(model, p.clean, p.corrupted, metric, "noising")[3]
    assert torch.allclose(ours, theirs, atol=1e-4)


def test_abc_tokens_have_three_distinct_names_and_keep_the_rest():
    p = grammar.ioi_prompts(20, seed=5)
    abc = grammar.abc_tokens(p, seed=2)
    rows = torch.arange(20)
    io, s1, s2 = (abc[rows, p.positions[role]] for role in ("IO", "S1", "S2"))
    assert ((io != s1) & (io != s2) & (s1 != s2)).all()
    assert ((io != p.io) & (s1 != p.s)).all()
    same = abc == p.clean
    changed = (~same).sum(1)
    assert (changed >= 3).all() and (changed <= 6).all()


class _WordTokenizer:
    """GPT-2's pre-tokenisation (a word with its leading space is one piece), one id per piece:
    enough to check the GPT-2 prompt generator offline."""

    bos_token_id = eos_token_id = 0

    def __init__(self):
        self.vocab = {"<|endoftext|>": 0}

    def encode(self, text):
        import re

        return [self.vocab.setdefault(piece, len(self.vocab)) for piece in re.findall(r" ?\w+| ?[^\w\s]", text)]

    def decode(self, ids):
        words = {i: piece for piece, i in self.vocab.items()}
        return "".join(words[i] for i in ids)


def test_gpt2_prompts_put_every_role_where_it_says():
    from mi_course.data import ioi_gpt2
    from mi_course.ioi_circuit import structure_groups

    p, abc = ioi_gpt2.ioi_prompts(_WordTokenizer(), 20, seed=1)
    rows = torch.arange(20)
    assert (p.clean[rows, p.positions["IO"]] == p.io).all()
    assert (p.clean[rows, p.positions["S1"]] == p.s).all() and (p.clean[rows, p.positions["S2"]] == p.s).all()
    assert (p.corrupted[rows, p.positions["S2"]] != p.s).all()
    assert (abc[rows, p.positions["IO"]] != p.io).all() and (abc[rows, p.positions["S1"]] != p.s).all()
    groups = structure_groups(p)
    for g in groups.unique():      # one template, one length: positions line up for mean-ablation
        assert len(p.positions["end"][groups == g].unique()) == 1
