"""Every registered exercise: the reference passes, every known mistake fails and is
recognised with its own hint, the stub is reported as not implemented, and there are at
least two known mistakes. A check that cannot fail is a defect."""

import pytest

from mi_course.grading import all_exercises, grade

EXERCISES = all_exercises()
MISTAKES = [(ex, m) for ex in EXERCISES for m in ex.mistakes]


def _stub(*args, **kwargs):
    raise NotImplementedError("Exercise: write your code here")


def test_exercises_are_registered():
    assert len(EXERCISES) >= 1


@pytest.mark.parametrize("ex", EXERCISES, ids=lambda ex: ex.id)
def test_has_two_known_mistakes(ex):
    assert len(ex.mistakes) >= 2, f"{ex.id} declares {len(ex.mistakes)} known mistake(s); at least 2 are required"
    assert len({m.hint for m in ex.mistakes}) == len(ex.mistakes), "hints must differ"


@pytest.mark.parametrize("ex", EXERCISES, ids=lambda ex: ex.id)
def test_reference_passes(ex):
    result = grade(ex, ex.reference)
    assert result.passed, result.message


@pytest.mark.parametrize("ex", EXERCISES, ids=lambda ex: ex.id)
def test_stub_is_not_implemented(ex):
    result = grade(ex, ... if ex.kind == "value" else _stub)
    assert result.status == "not_implemented", result.message
    assert result.use is ex.reference


@pytest.mark.parametrize("ex,mistake", MISTAKES, ids=lambda x: getattr(x, "id", None) or getattr(x, "name", ""))
def test_known_mistake_is_rejected_with_its_hint(ex, mistake):
    result = grade(ex, mistake.wrong)
    assert not result.passed, f"{ex.id}: the known mistake {mistake.name!r} passes the check"
    assert result.mistake is mistake, f"{ex.id}: {mistake.name!r} was not recognised:\n{result.message}"
    assert mistake.hint in result.message
