"""Chapter 2's checks hold for unseen seeds: for several seeds of the hidden cases, the reference
passes and every known mistake is rejected and recognised with its own hint (the instructor's
grader draws a seed the learner never saw)."""

import dataclasses
import functools
import sys

import pytest

from mi_course.grading import all_exercises, grade

EXERCISES = [ex for ex in all_exercises() if ex.chapter == "ch02"]


def _with_seed(ex, seed):
    sys.modules["mi_course.grading.check"]._expected_cache.pop(ex.id, None)  # expected outputs are cached per id
    return dataclasses.replace(ex, cases=functools.partial(ex.cases, seed))


def test_chapter_declares_its_exercises():
    assert len(EXERCISES) >= 12 and any(ex.validate for ex in EXERCISES)


@pytest.mark.parametrize("seed", [1, 5])
@pytest.mark.parametrize("ex", EXERCISES, ids=lambda ex: ex.id)
def test_reference_passes_and_mistakes_are_recognised_for_other_seeds(ex, seed):
    seeded = _with_seed(ex, seed)
    assert grade(seeded, seeded.reference).passed
    for mistake in seeded.mistakes:
        result = grade(seeded, mistake.wrong)
        assert not result.passed and result.mistake is mistake, f"seed {seed}, {mistake.name}: {result.message}"
    sys.modules["mi_course.grading.check"]._expected_cache.pop(ex.id, None)
