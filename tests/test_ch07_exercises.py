"""Chapter 7's checks: the reference passes, every known mistake is rejected with its own hint,
the stub is "not implemented", correct answers written differently pass, and cases follow the
seed convention."""

import pytest
import torch

from mi_course import illusions
from mi_course.grading import all_exercises, get_exercise, grade

CH07 = [ex for ex in all_exercises() if ex.id.startswith("ch07.")]


def _stub(*args, **kwargs):
    raise NotImplementedError("Exercise: write your code here")


def test_chapter_declares_its_exercises():
    assert {ex.id for ex in CH07} >= {"ch07.precision_recall", "ch07.subspace_patch", "ch07.parent_recall",
                                      "ch07.shattered_rows", "ch07.ablate_heads", "ch07.predict_copied",
                                      "ch07.illusory_direction", "ch07.ground_truth_score",
                                      "ch07.split_direction"}


@pytest.mark.parametrize("ex", CH07, ids=lambda ex: ex.id)
def test_reference_passes_and_stub_is_not_implemented(ex):
    assert grade(ex, ex.reference).passed
    assert grade(ex, ... if ex.kind == "value" else _stub).status == "not_implemented"


@pytest.mark.parametrize("ex,mistake", [(ex, m) for ex in CH07 for m in ex.mistakes],
                         ids=lambda x: getattr(x, "id", None) or getattr(x, "name", ""))
def test_each_mistake_is_rejected_with_its_hint(ex, mistake):
    result = grade(ex, mistake.wrong)
    assert not result.passed and result.mistake is mistake, result.message
    assert mistake.hint in result.message


def _precision_recall_by_counts(acts, labels, threshold):
    fires = acts > threshold
    tp = int((fires & labels).sum())
    return torch.tensor([tp / max(int(fires.sum()), 1), tp / max(int(labels.sum()), 1)])


def _patch_by_projector(base, source, direction):
    projector = torch.outer(direction, direction) / direction.dot(direction)
    return base @ (torch.eye(len(direction)) - projector) + source @ projector


def _recall_by_loop(parent_acts, child_active):
    return torch.stack([(parent_acts[child_active[:, j]] > 0).float().mean() if child_active[:, j].any()
                        else torch.tensor(0.0) for j in range(child_active.shape[1])])


def _ablate_by_mask(z, keep, kind, source):
    out = z.clone()
    drop = ~keep
    if kind == "mean":
        out[:, :, drop] = source[:, :, drop].mean(0)
    elif kind == "resample":
        out[:, :, drop] = source[:, :, drop]
    else:
        out[:, :, drop] = 0
    return out


def _predict_by_key(queries, distances, reach=46):
    key = queries - (distances - 1)
    return key < reach + 1


def _illusion_larger_angle(toy):
    w, r = toy.write.norm(), toy.read.norm()
    t = torch.pi / 2 - 0.5 * torch.asin(2 / (w * r))      # the other solution of sin(2t) = 2 / (|w| |r|)
    return torch.cos(t) * toy.write / w + torch.sin(t) * toy.read / r


def _split_by_svd(direction, w_out):
    u, s, _ = torch.linalg.svd(w_out, full_matrices=False)
    basis = u[:, s > 1e-5 * s.max()]
    unit = direction / direction.norm()
    readable = basis @ (basis.T @ unit)
    return unit - readable, readable


@pytest.mark.parametrize("exercise_id,answer", [
    ("ch07.precision_recall", _precision_recall_by_counts),
    ("ch07.subspace_patch", _patch_by_projector),
    ("ch07.parent_recall", _recall_by_loop),
    ("ch07.ablate_heads", _ablate_by_mask),
    ("ch07.predict_copied", _predict_by_key),
    ("ch07.illusory_direction", _illusion_larger_angle),
    ("ch07.split_direction", _split_by_svd),
])
def test_a_different_correct_answer_passes(exercise_id, answer):
    result = grade(get_exercise(exercise_id), answer)
    assert result.passed, result.message


@pytest.mark.parametrize("ex", [ex for ex in CH07 if ex.kind == "function"], ids=lambda ex: ex.id)
def test_cases_are_built_from_the_seed(ex):
    first, again, other = ex.cases(seed=0), ex.cases(seed=0), ex.cases(seed=3)
    assert len(first) >= 2 and [c.label for c in first] == [c.label for c in again]

    def tensors(cases):
        values = [a for c in cases for a in (*c.args, *c.kwargs.values())]
        values += [t for a in values if isinstance(a, illusions.ToyComponent) for t in (a.write, a.read)]
        return [a for a in values if isinstance(a, torch.Tensor)]

    assert all(torch.equal(a, b) for a, b in zip(tensors(first), tensors(again)))
    assert any(a.shape != b.shape or not torch.equal(a, b) for a, b in zip(tensors(first), tensors(other)))


def test_the_illusion_is_exact_on_the_toy():
    toy = illusions.toy_component(5, 3.0, torch.Generator().manual_seed(0))
    base, source = torch.randn(50), torch.randn(50)
    assert abs(illusions.patch_effect(toy, base, source, illusions.illusory_direction(toy)) - 1) < 1e-4
    assert abs(illusions.patch_effect(toy, base, source, None)) < 1e-5
