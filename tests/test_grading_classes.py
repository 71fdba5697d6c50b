"""Whole classes of wrong answers that once passed, and feedback that once misled (issue
"Checks and asserts that bite"). Each test writes a wrong answer of its class and asserts that
grading rejects it with the message that names the bug; each would pass the old grader."""

import dataclasses
import functools
import inspect
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
import torch

from mi_course import superposition as ref
from mi_course.data.features import sparse_features
from mi_course.data.repeated_tokens import content_token_ids, repeated_tokens
from mi_course.grading import Case, Exercise, Mistake, all_exercises, get_exercise, grade

FUNCTIONS = [ex for ex in all_exercises() if ex.kind == "function"]


def _failure(exercise_id: str, answer) -> str:
    result = grade(get_exercise(exercise_id), answer)
    assert not result.passed, f"{exercise_id}: a wrong answer passes"
    return result.message


# --- cases(seed) ----------------------------------------------------------------------------------


@pytest.mark.parametrize("ex", FUNCTIONS, ids=lambda ex: ex.id)
def test_cases_take_a_seed_and_other_seeds_grade_alike(ex):
    """The instructor's grader passes an unseen seed: the reference still passes and every
    known mistake is still recognised."""
    assert inspect.signature(ex.cases).parameters["seed"].default == 0
    other = dataclasses.replace(ex, cases=functools.partial(ex.cases, seed=7))
    assert grade(other, ex.reference).passed
    for mistake in ex.mistakes:
        assert grade(other, mistake.wrong).mistake is mistake, mistake.name


# --- 1. seeds and generators ------------------------------------------------------------------------


def _orthogonal_global_rng(d, eps, n_candidates, generator):
    return ref.nearly_orthogonal_vectors(d, eps, n_candidates)  # torch.randn without the generator


def _orthogonal_seed_zero(d, eps, n_candidates, generator):
    return ref.nearly_orthogonal_vectors(d, eps, n_candidates, torch.Generator().manual_seed(0))


def _features_global_rng(batch, sparsity, n, generator):
    return sparse_features(batch, sparsity, n)


def _repeated_global_rng(tokenizer, batch, seg_len, seed=0):
    ids = content_token_ids(tokenizer)
    segment = ids[torch.rand(batch, len(ids)).argsort(dim=-1)[:, :seg_len]]
    bos = torch.full((batch, 1), tokenizer.bos_token_id)
    return torch.cat([bos, segment, segment], dim=-1)


def _repeated_seed_zero(tokenizer, batch, seg_len, seed=0):
    return repeated_tokens(tokenizer, batch, seg_len, 0)


@pytest.mark.parametrize("exercise_id,answer", [("ch01.nearly_orthogonal_vectors", _orthogonal_global_rng),
                                                ("ch01.sparse_features", _features_global_rng),
                                                ("ch03.repeated_tokens", _repeated_global_rng)])
def test_global_rng_instead_of_the_seed_is_rejected(exercise_id, answer):
    message = _failure(exercise_id, answer)
    assert "gives different outputs for the same seed" in message
    assert "does it use the global RNG instead of" in message


@pytest.mark.parametrize("exercise_id,answer", [("ch01.nearly_orthogonal_vectors", _orthogonal_seed_zero),
                                                ("ch03.repeated_tokens", _repeated_seed_zero)])
def test_always_the_same_seed_is_rejected(exercise_id, answer):
    assert "ignores the seed" in _failure(exercise_id, answer)


def test_inputs_name_the_generator_and_its_seed():
    message = _failure("ch01.nearly_orthogonal_vectors", _orthogonal_seed_zero)
    assert "generator=a torch.Generator (seed 1)" in message
    assert "object at 0x" not in message
    tokens = _failure("ch03.repeated_tokens", _repeated_seed_zero)
    assert " of length 12, 4, 6, seed=1" in tokens and "name_or_path" not in tokens


def _permutation(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randperm(n, generator=generator)


def _validate_permutation(case: Case, out) -> str | None:
    n = case.args[0]
    return None if torch.equal(out.sort().values, torch.arange(n)) else "not a permutation"


def _toy_seeded(case) -> Exercise:
    """A validated exercise on one case, built fresh by `case()` as every cases function must."""
    return Exercise(id="test.permutation", title="A random permutation", reference=_permutation,
                    cases=lambda seed=0: [case()], seed_arg="generator", validate=_validate_permutation,
                    mistakes=(Mistake("identity", lambda n, generator: torch.arange(n), "Shuffle."),
                              Mistake("reversed", lambda n, generator: torch.arange(n).flip(0), "Shuffle.")))


def test_seed_passed_by_position_or_keyword():
    def global_rng(n, generator):
        return torch.randperm(n)

    for case in (lambda: Case(args=(20, torch.Generator().manual_seed(3))),
                 lambda: Case(args=(20,), kwargs={"generator": torch.Generator().manual_seed(3)})):
        ex = _toy_seeded(case)
        assert grade(ex, _permutation).passed
        assert "does it use the global RNG" in grade(ex, global_rng).message


def test_seed_that_cannot_matter_is_not_required_to():
    """A permutation of one element is the same for every seed: ignoring the seed is no bug there."""
    ex = _toy_seeded(lambda: Case(args=(1,), kwargs={"generator": torch.Generator().manual_seed(3)}))
    assert grade(ex, lambda n, generator: torch.arange(n)).passed


def test_grading_leaves_the_global_rng_as_it_was():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    assert grade(get_exercise("ch01.sparse_features"), sparse_features).passed
    assert torch.equal(torch.rand(3), expected)


def _repeated_row_by_row(tokenizer, batch, seg_len, seed=0):
    generator = torch.Generator().manual_seed(seed)
    ids = content_token_ids(tokenizer)
    segment = torch.stack([ids[torch.randperm(len(ids), generator=generator)[:seg_len]] for _ in range(batch)])
    return torch.cat([torch.full((batch, 1), tokenizer.bos_token_id), segment, segment], dim=-1)


def _features_values_first(batch, sparsity, n, generator):
    values = torch.rand(batch, len(sparsity), n, generator=generator, dtype=torch.float64)
    present = torch.bernoulli((1 - sparsity)[:, None].double().expand(values.shape), generator=generator)
    return (values * present).float()


def _orthogonal_float64(d, eps, n_candidates, generator):
    kept = torch.empty(0, d, dtype=torch.float64)
    for v in torch.randn(n_candidates, d, generator=generator, dtype=torch.float64):
        v = v / v.norm()
        if (kept @ v).abs().le(eps).all():
            kept = torch.cat([kept, v[None]])
    return kept.float()


@pytest.mark.parametrize("exercise_id,answer", [("ch03.repeated_tokens", _repeated_row_by_row),
                                                ("ch01.sparse_features", _features_values_first),
                                                ("ch01.nearly_orthogonal_vectors", _orthogonal_float64)],
                         ids=["repeated_tokens", "sparse_features", "nearly_orthogonal_vectors"])
def test_right_answers_by_other_algorithms_pass_at_any_seed(exercise_id, answer):
    ex = get_exercise(exercise_id)
    for seed in (0, 11):
        result = grade(dataclasses.replace(ex, cases=functools.partial(ex.cases, seed=seed)), answer)
        assert result.passed, result.message


# --- 2. optional arguments ----------------------------------------------------------------------------


def _non_default(value, default) -> bool:
    if value is default:
        return False
    try:
        return bool(value != default)
    except (TypeError, RuntimeError):  # tensors and other values with no plain truth value
        return True


@pytest.mark.parametrize("ex", FUNCTIONS, ids=lambda ex: ex.id)
def test_every_optional_argument_gets_a_non_default_value(ex):
    parameters = inspect.signature(ex.reference).parameters
    optional = {name: p.default for name, p in parameters.items() if p.default is not inspect.Parameter.empty}
    for name, default in optional.items():
        passed = [inspect.signature(ex.reference).bind(*c.args, **c.kwargs).arguments.get(name, default)
                  for c in ex.cases()]
        assert any(_non_default(v, default) for v in passed), (
            f"{ex.id}: no case passes `{name}` with a value other than its default {default!r}, so an "
            "answer that ignores it passes")


def test_hard_coded_defaults_are_rejected():
    assert "wrong values" in _failure("ch01.classify_phase", lambda W, threshold=0.5: ref.classify_phase(W))
    assert "wrong values" in _failure(
        "ch01.train_toy_models",
        lambda W, b, importance, features, steps, lr=1e-2: ref.train_toy_models(W, b, importance, features, steps))


# --- 3. validators that test the property -------------------------------------------------------------


def _orthonormal_basis(d, eps, n_candidates, generator):
    return torch.linalg.qr(torch.randn(d, d, generator=generator)).Q


def test_an_orthonormal_basis_is_not_enough():
    assert "no more than an orthonormal basis" in _failure("ch01.nearly_orthogonal_vectors",
                                                           lambda d, eps, n_candidates, generator: torch.eye(d))
    assert "no more than an orthonormal basis" in _failure("ch01.nearly_orthogonal_vectors", _orthonormal_basis)


def _features_together(batch, sparsity, n, generator):
    present = torch.rand(batch, len(sparsity), 1, generator=generator) < (1 - sparsity)[:, None]
    return torch.rand(batch, len(sparsity), n, generator=generator) * present


def _features_shared_value(batch, sparsity, n, generator):
    present = torch.rand(batch, len(sparsity), n, generator=generator) < (1 - sparsity)[:, None]
    return torch.rand(batch, len(sparsity), 1, generator=generator) * present


def _features_uneven_density(batch, sparsity, n, generator):
    """Feature f present with probability (1 - S) * 2f / (n - 1): right on average over features."""
    p = (1 - sparsity)[:, None] * torch.linspace(0, 2, n) if n > 1 else (1 - sparsity)[:, None]
    present = torch.rand(batch, len(sparsity), n, generator=generator) < p
    return torch.rand(batch, len(sparsity), n, generator=generator) * present


def _features_two_values(batch, sparsity, n, generator):
    """Values 0.5 +- 1/sqrt(12): the mean and spread of a uniform, but not uniform."""
    present = torch.rand(batch, len(sparsity), n, generator=generator) < (1 - sparsity)[:, None]
    sign = torch.randint(0, 2, (batch, len(sparsity), n), generator=generator) * 2 - 1
    return (0.5 + sign * 12**-0.5) * present


def _features_one_draw_per_feature(batch, sparsity, n, generator):
    """One uniform per sample and feature, thresholded by each instance's sparsity: instances share it."""
    u = torch.rand(batch, 1, n, generator=generator)
    return torch.rand(batch, len(sparsity), n, generator=generator) * (u < (1 - sparsity)[:, None])


@pytest.mark.parametrize("answer,reason", [
    (_features_together, "different features switch on and off together"),
    (_features_one_draw_per_feature, "different instances switch on and off together"),
    (_features_shared_value, "the values of different features are correlated"),
    (_features_uneven_density, "does not match 1 - S for every instance and feature"),
    (_features_two_values, "the present values are not uniform"),
], ids=lambda x: getattr(x, "__name__", ""))
def test_sparse_features_must_be_independent_and_uniform(answer, reason):
    assert reason in _failure("ch01.sparse_features", answer)


def _repeated_sorted(tokenizer, batch, seg_len, seed=0):
    tokens = repeated_tokens(tokenizer, batch, seg_len, seed)
    segment = tokens[:, 1 : seg_len + 1].sort(dim=-1).values
    return torch.cat([tokens[:, :1], segment, segment], dim=-1)


def test_repeated_segments_must_be_in_random_order():
    assert "every segment is sorted" in _failure("ch03.repeated_tokens", _repeated_sorted)


# --- 4. edge cases -----------------------------------------------------------------------------------------


def _cosine_diagonal_by_value(vectors):
    unit = vectors / vectors.norm(dim=-1, keepdim=True)
    cos = (unit @ unit.T).abs()
    return cos[cos < 1 - 1e-6].max()


def _phase_at_threshold_counts(W, threshold=0.5):
    represented = W[:, 0, :].abs() >= threshold
    phase = torch.zeros(W.shape[0], dtype=torch.long)
    phase[represented[:, 1]] = 1
    phase[represented[:, 1] & represented[:, 0]] = 2
    return phase


def _copying_with_tolerance(circuit):
    diagonal = circuit.diagonal(dim1=-2, dim2=-1)
    return (diagonal >= circuit.max(dim=-1).values - 1e-3).float().mean(dim=-1)


@pytest.mark.parametrize("exercise_id,answer,case", [
    ("ch01.max_abs_cosine", _cosine_diagonal_by_value, "exactly parallel"),
    ("ch01.classify_phase", _phase_at_threshold_counts, "exactly at it"),
    ("ch03.copying_score", _copying_with_tolerance, "close to its row's largest"),
], ids=["parallel rows", "at the threshold", "small but close"])
def test_edge_cases_are_graded(exercise_id, answer, case):
    assert case in _failure(exercise_id, answer)


# --- mistakes are matched by output -----------------------------------------------------------------------


def test_same_failure_reason_with_another_output_gets_no_hint():
    """The signed test's reason ("below -eps"), from a different bug: no hint about the sign."""
    def signed_and_float64(d, eps, n_candidates, generator):
        c = torch.randn(n_candidates, d, generator=generator, dtype=torch.float64)
        c = c / c.norm(dim=-1, keepdim=True)
        kept = c[:1]
        for v in c[1:]:
            if (kept @ v <= eps).all():
                kept = torch.cat([kept, v[None]])
        return kept.float()

    result = grade(get_exercise("ch01.nearly_orthogonal_vectors"), signed_and_float64)
    assert "below -eps" in result.message
    assert result.mistake is None and "Hint" not in result.message


# --- value exercises ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("answer", [Fraction(1, 4), Decimal("0.25"), np.float32(0.25), np.float64(0.25),
                                    torch.tensor(0.25), 0.25], ids=lambda a: type(a).__name__)
def test_any_real_number_is_accepted(answer):
    assert grade(get_exercise("ch01.jl_constant"), answer).passed


def test_a_count_must_be_a_whole_number():
    count = get_exercise("ch01.r2_count")
    for right in (2, 2.0, np.int64(2), Fraction(4, 2), torch.tensor(2)):
        assert grade(count, right).passed, right
    assert "expected a whole number" in grade(count, 2.0001).message


@pytest.mark.parametrize("answer", [None, float("nan"), float("inf")], ids=str)
def test_typed_values_are_told_what_was_expected(answer):
    message = grade(get_exercise("ch01.jl_constant"), answer).message
    assert "expected a" in message
    assert "return" not in message and "division by zero" not in message


# --- dtype ---------------------------------------------------------------------------------------------------------


def test_right_values_in_the_wrong_dtype_say_so():
    right = _failure("ch03.per_token_loss", lambda logits, tokens: get_exercise("ch03.per_token_loss")
                     .reference(logits.double(), tokens))
    assert "the values are right, only the dtype differs" in right
    wrong = _failure("ch03.per_token_loss", lambda logits, tokens: torch.zeros(logits.shape[:2])[:, 1:].double())
    assert "only the dtype differs" not in wrong and "the values differ too" in wrong
