"""Chapter 4's checks accept correct answers written differently from the reference, and their
cases follow the seed convention. (tests/test_exercises.py proves for every exercise that the
reference passes, each known mistake is rejected with its hint and the stub is not implemented.)"""

import pytest
import torch

from mi_course.exercises import ch04_probing as ch04
from mi_course.grading import get_exercise, grade

CH04 = ["stack_residuals", "split_by_walk", "fit_probes", "bayes_move_loss", "control_task",
        "mean_ablate_subspace", "steer_subspace", "erase_label", "random_init_weights"]


def _adam_probes(acts, labels, n_classes):
    """Logistic regression by full-batch Adam, a Python loop over depths: slow but right."""
    weights, biases = [], []
    for depth_acts in acts:
        mean, std = depth_acts.mean(0), depth_acts.std(0) + 1e-6
        inputs = (depth_acts - mean) / std
        linear = torch.nn.Linear(inputs.shape[1], n_classes)
        optimizer = torch.optim.Adam(linear.parameters(), lr=0.05)
        for _ in range(400):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(linear(inputs), labels).backward()
            optimizer.step()
        weight = linear.weight.detach().T / std[:, None]
        weights.append(weight)
        biases.append(linear.bias.detach() - mean @ weight)
    return torch.stack(weights), torch.stack(biases)


def _split_with_unique(keep, test_fraction, seed=0):
    walk = torch.arange(keep.shape[0])[:, None].expand_as(keep)[keep]
    order = torch.rand(keep.shape[0], generator=torch.Generator().manual_seed(seed)).argsort()
    return torch.isin(walk, order[: round(test_fraction * keep.shape[0])])


def _control_with_unique(types, n_classes, seed=0):
    kinds, inverse = types.unique(return_inverse=True)
    table = torch.randint(n_classes, (len(kinds),), generator=torch.Generator().manual_seed(seed))
    return table[inverse]


def _ablate_with_projector(resid, directions, where):
    projector = directions @ torch.linalg.pinv(directions)          # projection onto the span
    inside = resid @ projector
    return torch.where(where[..., None], resid - inside + inside[where].mean(0), resid)


def _random_init_from_config(model, seed=0):
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    config = TransformerBridgeConfig.from_dict(model.cfg.to_dict() | {"seed": seed})
    return TransformerBridge.boot_native(config, tokenizer=model.tokenizer).state_dict()


@pytest.mark.parametrize("exercise_id,answer", [
    ("ch04.fit_probes", _adam_probes),
    ("ch04.split_by_walk", _split_with_unique),
    ("ch04.control_task", _control_with_unique),
    ("ch04.mean_ablate_subspace", _ablate_with_projector),
    ("ch04.random_init_weights", _random_init_from_config),
])
def test_a_different_correct_answer_passes(exercise_id, answer):
    result = grade(get_exercise(exercise_id), answer)
    assert result.passed, result.message


@pytest.mark.parametrize("name", CH04)
def test_cases_are_built_from_the_seed(name):
    exercise = get_exercise(f"ch04.{name}")
    first, again, other = exercise.cases(seed=0), exercise.cases(seed=0), exercise.cases(seed=5)
    assert len(first) >= 2 and [c.label for c in first] == [c.label for c in again]

    def tensors(cases):
        values = [a for c in cases for a in (*c.args, *c.kwargs.values())]
        values += [v for a in values if isinstance(a, dict) for v in a.values()]
        return [a for a in values if isinstance(a, torch.Tensor)]

    assert all(torch.equal(a, b) for a, b in zip(tensors(first), tensors(again)))
    if name != "random_init_weights":   # its inputs are the shipped models; only the seed argument changes
        assert any(not torch.equal(a, b) for a, b in zip(tensors(first), tensors(other)))
    if exercise.seed_arg:
        assert all(exercise.seed_arg in c.kwargs for c in first), "seeded exercises pass the seed as a keyword"
        assert {c.kwargs[exercise.seed_arg] for c in first} != {c.kwargs[exercise.seed_arg] for c in other}
