"""Chapter 5's checks accept correct answers written differently from the reference, reject the
degenerate designs the text warns about, and build their cases from the seed; the helpers the
chapter relies on (aligned fact pairs, induction corruptions, the toy circuit) do what they say.
(tests/test_exercises.py proves for every exercise that the reference passes, each known mistake
is rejected with its hint and the stub is not implemented; tests/test_grading_classes.py that
this holds for another seed.)"""

import pytest
import torch

from mi_course import patching_steps as steps
from mi_course import toy_circuits as toy
from mi_course.data import facts
from mi_course.grading import get_exercise, grade

CH05 = ["normalised_logit_diff", "patch_resid_by_pos", "noise_and_denoise", "subject_noise",
        "attribution_heads", "design_key_corruption"]


def _metric_by_gather(logits, position, correct, wrong, clean, corrupt):
    batch = logits.shape[-3]
    at = torch.stack([logits[..., b, position[b], :] for b in range(batch)], dim=-2)
    diff = at.gather(-1, correct[:, None].expand(*at.shape[:-1], 1)) - at.gather(-1, wrong[:, None].expand(*at.shape[:-1], 1))
    return (diff[..., 0].mean(-1) - corrupt) / (clean - corrupt)


def _resid_one_pass_per_site(model, clean_tokens, corrupt_tokens, metric):
    """A slow but right answer: one forward pass per (layer, position)."""
    names = [f"blocks.{layer}.hook_resid_pre" for layer in range(model.cfg.n_layers)]
    with torch.no_grad():
        _, cache = model.run_with_cache(clean_tokens, names_filter=lambda name: name in names)
        out = torch.zeros(len(names), clean_tokens.shape[1])
        for layer, name in enumerate(names):
            for pos in range(clean_tokens.shape[1]):
                def hook(act, hook, pos=pos, name=name):
                    act = act.clone()
                    act[:, pos] = cache[name][:, pos]
                    return act
                out[layer, pos] = metric(model.run_with_hooks(corrupt_tokens, fwd_hooks=[(name, hook)])[None])[0]
    return out


def _toy_by_loop(circuit, clean, corrupt):
    clean_nodes, corrupt_nodes = circuit.nodes(clean), circuit.nodes(corrupt)
    clean_value, corrupt_value = circuit.output(clean_nodes), circuit.output(corrupt_nodes)
    rows = []
    for run, source in ((corrupt_nodes, clean_nodes), (clean_nodes, corrupt_nodes)):
        row = []
        for node in range(circuit.n_nodes):
            patched = run.clone()
            patched[:, node] = source[:, node]
            row.append((circuit.output(patched) - corrupt_value) / (clean_value - corrupt_value))
        rows.append(torch.stack(row))
    return torch.stack(rows)


def _noise_masked_fill(W_E, tokens, subject_mask, scale=3.0, samples=4, seed=0):
    sigma = torch.cat([W_E[t] for t in tokens[subject_mask]]).std()
    noise = torch.randn(samples, *tokens.shape, W_E.shape[1], generator=torch.Generator().manual_seed(seed))
    return noise.masked_fill(~subject_mask[None, :, :, None], 0.0).mul(scale * sigma).reshape(-1, *noise.shape[2:])


def _attribution_by_layer(model, clean_tokens, corrupt_tokens, metric):
    """Gradients collected with torch.autograd.grad instead of retain_grad."""
    names = [f"blocks.{layer}.attn.hook_z" for layer in range(model.cfg.n_layers)]
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(clean_tokens, names_filter=lambda name: name in names)
    acts = {}

    def keep(act, hook):
        acts[len(acts)] = act
        return act

    with torch.enable_grad():
        logits = model.run_with_hooks(corrupt_tokens, fwd_hooks=[(name, keep) for name in names])
        grads = torch.autograd.grad(metric(logits[None])[0], [acts[i] for i in range(len(names))])
    return torch.stack([torch.einsum("bphd,bphd->h", clean_cache[name] - acts[i].detach(), grads[i])
                        for i, name in enumerate(names)])


def _design_absent_token(clean_tokens, seg_len, query):
    corrupt = clean_tokens.clone()
    corrupt[:, query - seg_len] = (clean_tokens.max() + 1) % 290 + 2   # a token id occurring in no row
    return corrupt


@pytest.mark.parametrize("exercise_id,answer", [
    ("ch05.normalised_logit_diff", _metric_by_gather),
    ("ch05.patch_resid_by_pos", _resid_one_pass_per_site),
    ("ch05.noise_and_denoise", _toy_by_loop),
    ("ch05.subject_noise", _noise_masked_fill),
    ("ch05.attribution_heads", _attribution_by_layer),
    ("ch05.design_key_corruption", _design_absent_token),
])
def test_a_different_correct_answer_passes(exercise_id, answer):
    result = grade(get_exercise(exercise_id), answer)
    assert result.passed, result.message


@pytest.mark.parametrize("answer,reason", [
    (lambda clean, seg_len, query: clean.clone(), "removes only"),
    (lambda clean, seg_len, query: clean.float(), "torch.long"),
    (lambda clean, seg_len, query: torch.cat([clean[:, :-1], clean[:, :1]], 1), "keep the tokens"),
])
def test_degenerate_designs_are_rejected_with_the_property_they_miss(answer, reason):
    result = grade(get_exercise("ch05.design_key_corruption"), answer)
    assert not result.passed and reason in result.message, result.message


@pytest.mark.parametrize("name", CH05)
def test_cases_are_built_from_the_seed(name):
    exercise = get_exercise(f"ch05.{name}")
    first, again, other = exercise.cases(seed=0), exercise.cases(seed=0), exercise.cases(seed=5)
    assert len(first) >= 2 and [c.label for c in first] == [c.label for c in again]

    def tensors(cases):
        values = [a for c in cases for a in (*c.args, *c.kwargs.values())]
        values += [v for a in values if hasattr(a, "keywords") for v in a.keywords.values()]   # metric partials
        return [a for a in values if isinstance(a, torch.Tensor)]

    assert all(torch.equal(a, b) for a, b in zip(tensors(first), tensors(again)))
    assert any(not torch.equal(a, b) for a, b in zip(tensors(first), tensors(other)))
    if exercise.seed_arg:
        assert all(exercise.seed_arg in c.kwargs for c in first), "seeded exercises pass the seed as a keyword"


def test_the_toy_circuit_is_an_or_plus_an_and():
    circuit = toy.or_and_circuit()
    values = circuit.output(circuit.nodes(torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))[:, None])
    assert values.tolist() == [2.0, 1.0, 0.0, 0.0]      # OR(u, u) + AND(u, v) per input
    with pytest.raises(ValueError, match="bad gate"):
        toy.ToyCircuit(torch.ones(2, 2), (("xor", (0, 1)),))


def test_subject_swaps_align_and_change_the_answer():
    clean, corrupt = steps.subject_swaps("city", 12, seed=3)
    assert clean.tokens.shape == corrupt.tokens.shape and (clean.final == clean.final[0]).all()
    assert torch.equal(clean.subject_mask, corrupt.subject_mask) and (clean.answer != corrupt.answer).all()
    outside = ~clean.subject_mask
    assert torch.equal(clean.tokens[outside], corrupt.tokens[outside])
    assert all(fact.relation == "city" for fact in clean.facts + corrupt.facts)
    assert facts.VOCAB[clean.tokens[0, 1]] == "the"


def test_induction_corruptions_change_one_thing_each():
    from mi_course.models import load_model

    tokenizer = load_model("attn-only-2l", device="cpu").tokenizer
    clean, query = steps.induction_prompt(tokenizer, 6, 10, seed=0)
    answer_at = steps.answer_position(10, query)
    assert torch.equal(clean[:, answer_at], clean[:, query + 1])   # the answer's earlier occurrence
    new = steps.replacements(tokenizer, clean, seed=1)
    assert not (clean == new[:, None]).any(), "a replacement must occur nowhere in its row"
    for corrupt, changed in ((steps.value_corruption(clean, 10, query, new), [answer_at]),
                             (steps.key_corruption(clean, 10, query), [answer_at - 1])):
        assert (corrupt != clean).any(0).nonzero()[:, 0].tolist() == changed
