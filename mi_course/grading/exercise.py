"""How an exercise is declared: once, as data, in `mi_course/exercises/chNN_*.py`.

An exercise names its reference, hidden cases, a comparison and the *known mistakes*
learners commonly make. Grading (see `check.py`) runs the learner's answer on every case
and, when it fails, tells which known mistake it reproduces.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Optional

Validator = Callable[["Case", Any], Optional[str]]


@dataclass(frozen=True)
class Case:
    """One hidden input. `args`/`kwargs` are passed to the learner's function.

    Cases are built fresh for every call (see `Exercise.cases`), so a learner who
    modifies an input in place cannot corrupt the next case.
    """

    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    label: str = ""


@dataclass(frozen=True)
class Mistake:
    """A wrong variant of the reference that learners commonly write.

    For a function exercise `wrong` is a function with the reference's signature; for a
    value exercise it is a wrong value. `hint` is shown when the learner's output matches it.
    """

    name: str
    wrong: Any
    hint: str


@dataclass(frozen=True)
class Exercise:
    """An exercise, graded by `mi_course.check(id, answer)`.

    kind="function": the answer is a callable, run on each of `cases()`.
    kind="value": the answer is a value (number, tensor, choice); `reference` is the
    expected value, and `cases` is unused.

    Outputs are compared to the reference's with `rtol`/`atol`, unless `validate` is
    given: then `validate(case, output)` returns None when the output is acceptable or a
    one-line reason why not. Use it where many answers are right (random constructions,
    trained models), and make it test the property the exercise is about. Either way a known
    mistake is recognised only when the learner's output agrees with the mistake's output on
    the failing case, so mistakes must be deterministic functions of the case.

    `cases(seed=0)` builds every input from `seed`: self-grading uses the default, the
    instructor's grader draws a seed the learner never saw. `seed_arg` names the argument
    (of the reference's signature) that carries a seed or `torch.Generator` in seeded
    exercises: grading then calls the answer again with the same seed (the same output is
    required, whatever the global RNG) and with other seeds (a different output is required
    where the reference's output differs); see `seeding.py`.
    `forbidden` lists dotted names of library functions that compute the answer outright
    (e.g. "transformer_lens.patching.get_act_patch_resid_pre"): grading for a record locks
    them away, as it does the reference.
    `handed_out` lists dotted names of course functions the chapter gives the learner for this
    answer although another exercise's reference calls them (a method of a course object may
    rely on one): grading for a record leaves them open to every answer of the notebook, so
    they may never be an exercise's reference.
    """

    id: str
    title: str
    reference: Any
    mistakes: tuple[Mistake, ...]
    cases: Callable[..., list[Case]] = lambda seed=0: [Case()]
    kind: Literal["function", "value"] = "function"
    rtol: float = 1e-4
    atol: float = 1e-5
    validate: Optional[Validator] = None
    timeout_s: float = 20.0
    check_dtype: bool = True
    seed_arg: Optional[str] = None
    forbidden: tuple[str, ...] = ()
    handed_out: tuple[str, ...] = ()

    @property
    def chapter(self) -> str:
        """The chapter key, e.g. "ch01" for "ch01.max_abs_cosine"."""
        return self.id.split(".", 1)[0]


_REGISTRY: dict[str, Exercise] = {}


def register(exercise: Exercise) -> Exercise:
    """Add an exercise to the registry; ids are unique."""
    if exercise.id in _REGISTRY:
        raise ValueError(f"exercise {exercise.id!r} is declared twice")
    _REGISTRY[exercise.id] = exercise
    return exercise


def get_exercise(exercise_id: str) -> Exercise:
    if exercise_id not in _REGISTRY:
        _load_all(chapter=exercise_id.split(".", 1)[0])
    try:
        return _REGISTRY[exercise_id]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise KeyError(f"no exercise called {exercise_id!r}; known: {known}") from None


def all_exercises() -> list[Exercise]:
    _load_all()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def _load_all(chapter: str = "ch") -> None:
    """Import the exercise modules whose names start with `chapter` ("ch03": just Chapter 3's),
    which registers their exercises. One chapter's check never pays for another's imports."""
    import importlib
    import pkgutil

    from mi_course import exercises

    for info in pkgutil.iter_modules(exercises.__path__):
        if info.name.startswith(chapter):
            importlib.import_module(f"{exercises.__name__}.{info.name}")
