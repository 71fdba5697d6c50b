"""The autograder on every class of bad input: each gets its own one-line diagnosis."""

import json
import math

import pytest
import torch

from mi_course.grading import Case, Exercise, Mistake, check, grade
from mi_course.grading import exercise as exercise_module


def _double(x: torch.Tensor) -> torch.Tensor:
    return x * 2


def _triple(x: torch.Tensor) -> torch.Tensor:
    return x * 3


def _square(x: torch.Tensor) -> torch.Tensor:
    return x**2


def _cases() -> list[Case]:
    g = torch.Generator().manual_seed(0)
    return [Case(args=(torch.randn(3, 4, generator=g),), label="3x4"),
            Case(args=(torch.randn(1, 1, generator=g),), label="1x1 edge")]


DOUBLE = Exercise(
    id="test.double", title="Double a tensor", reference=_double, cases=_cases, timeout_s=1.0,
    mistakes=(Mistake("tripled", _triple, "Multiply by two, not three."),
              Mistake("squared", _square, "Doubling is x * 2, not x ** 2.")),
)

ANSWER = Exercise(
    id="test.answer", title="A value answer", reference=2, kind="value",
    mistakes=(Mistake("orthogonal only", 1, "Think of lines, not vectors."),
              Mistake("the dimension", 3, "Three lines through the origin cannot all be far apart.")),
)


def _validate_unit_rows(case: Case, out) -> str | None:
    if not isinstance(out, torch.Tensor):
        return "return a tensor"
    if out.shape != case.args[0].shape:
        return f"shape {tuple(out.shape)}, expected {tuple(case.args[0].shape)}"
    if torch.allclose(out.norm(dim=-1), torch.ones(out.shape[0]), atol=1e-4):
        return None
    if torch.allclose(out.norm(), torch.tensor(1.0), atol=1e-4):
        return "the whole matrix has norm 1, not each row"
    if torch.allclose(out.norm(dim=0), torch.ones(out.shape[1]), atol=1e-4):
        return "the columns have norm 1, not the rows"
    return "rows are not unit vectors"


UNIT = Exercise(
    id="test.unit_rows", title="Normalise rows", reference=lambda x: x / x.norm(dim=-1, keepdim=True),
    cases=_cases, validate=_validate_unit_rows,
    mistakes=(Mistake("column norm", lambda x: x / x.norm(dim=0, keepdim=True), "Normalise each row (dim=-1)."),
              Mistake("no keepdim", lambda x: x / x.norm(), "Divide each row by its own norm.")),
)


def test_reference_passes_and_is_used():
    result = grade(DOUBLE, _double)
    assert result.passed and result.use is _double
    assert "passed all 2 cases" in result.message


def test_stub_is_not_implemented():
    def stub(x):
        raise NotImplementedError("Exercise test.double: write your code here")

    result = grade(DOUBLE, stub)
    assert result.status == "not_implemented"
    assert "not implemented yet" in result.message
    assert result.use is _double
    assert "uses the reference solution" in result.message


def test_other_exception_names_type_and_line():
    def broken(x):
        return x[10, 10]

    result = grade(DOUBLE, broken)
    assert result.status == "failed"
    assert "raised IndexError" in result.message
    assert "`return x[10, 10]`" in result.message
    assert "Traceback" not in result.message
    assert len(result.message.splitlines()) <= 5


def test_exit_does_not_end_the_session():
    import sys

    result = grade(DOUBLE, lambda x: sys.exit(1))
    assert result.status == "failed" and "called exit()" in result.message


def test_returns_none():
    def forgot_return(x):
        x * 2

    result = grade(DOUBLE, forgot_return)
    assert "is None: did you forget to `return` it?" in result.message


def test_wrong_shape():
    result = grade(DOUBLE, lambda x: (x * 2).sum(0))
    assert "has shape (4,), expected (3, 4)" in result.message


def test_wrong_dtype():
    result = grade(DOUBLE, lambda x: (x * 2).double())
    assert "has dtype float64, expected float32" in result.message


def test_wrong_device():
    result = grade(DOUBLE, lambda x: torch.empty(x.shape, device="meta"))
    assert "is on device 'meta', expected 'cpu'" in result.message


def test_nan_and_inf():
    assert "contains NaN" in grade(DOUBLE, lambda x: x * float("nan")).message
    assert "contains inf" in grade(DOUBLE, lambda x: x + math.inf).message


def test_in_place_modification():
    def in_place(x):
        return x.mul_(2)

    result = grade(DOUBLE, in_place)
    assert result.status == "failed"
    assert "modified its input in place" in result.message


def test_runs_forever_is_stopped():
    def forever(x):
        while True:
            pass

    result = grade(DOUBLE, forever)
    assert result.status == "failed"
    assert "did not finish within 1 s" in result.message


def test_learner_cannot_swallow_the_time_limit():
    def stubborn(x):
        while True:
            try:
                while True:
                    pass
            except Exception:
                pass

    assert "did not finish" in grade(DOUBLE, stubborn).message


def test_numpy_instead_of_tensor():
    result = grade(DOUBLE, lambda x: (x * 2).numpy())
    assert "return a torch.Tensor" in result.message


def test_not_callable():
    assert "expects your function" in grade(DOUBLE, 3).message


def test_wrong_values_show_expected_got_and_error():
    result = grade(DOUBLE, lambda x: x * 2 + 1)
    assert "wrong values" in result.message
    assert "Expected: Tensor[3, 4] float32" in result.message
    assert "Max abs error: 1" in result.message
    assert result.mistake is None


@pytest.mark.parametrize("mistake", DOUBLE.mistakes, ids=lambda m: m.name)
def test_known_mistake_shows_its_hint(mistake):
    result = grade(DOUBLE, mistake.wrong)
    assert not result.passed and result.mistake is mistake
    assert mistake.hint in result.message


def test_value_answers():
    assert grade(ANSWER, 2).passed
    assert grade(ANSWER, 2.0).passed
    stub = grade(ANSWER, ...)
    assert stub.status == "not_implemented" and stub.use == 2
    wrong = grade(ANSWER, 3)
    assert wrong.mistake is ANSWER.mistakes[1] and ANSWER.mistakes[1].hint in wrong.message
    unknown = grade(ANSWER, 7)
    assert not unknown.passed and unknown.mistake is None and unknown.use == 2
    assert "Your answer should be a whole number" in grade(ANSWER, "two").message


def test_validated_exercise_recognises_mistakes_by_output():
    assert grade(UNIT, UNIT.reference).passed
    for mistake in UNIT.mistakes:
        result = grade(UNIT, mistake.wrong)
        assert result.mistake is mistake, result.message
    assert "the output is None" in grade(UNIT, lambda x: None).message


def test_check_records_progress_and_prints(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(exercise_module._REGISTRY, DOUBLE.id, DOUBLE)
    check(DOUBLE.id, _triple)
    check(DOUBLE.id, _double)
    check(DOUBLE.id, _triple)  # a later failure does not undo a pass
    data = json.loads((tmp_path / "progress.json").read_text())
    assert data[DOUBLE.id]["status"] == "passed" and data[DOUBLE.id]["attempts"] == 3
    assert "[v] test.double" in capsys.readouterr().out


def test_strict_mode_raises(monkeypatch):
    monkeypatch.setitem(exercise_module._REGISTRY, DOUBLE.id, DOUBLE)
    monkeypatch.setenv("MI_COURSE_STRICT", "1")
    with pytest.raises(AssertionError, match="tripled"):
        check(DOUBLE.id, _triple, quiet=True)


def test_unknown_exercise_id():
    with pytest.raises(KeyError, match="no exercise called"):
        check("ch99.nothing", _double)
