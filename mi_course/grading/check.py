"""`check(exercise_id, answer)`: grade an answer at once and tell the learner what to fix.

A check never raises on a learner's bug and never passes a wrong answer. It returns a
`CheckResult` whose `.use` is what the rest of the chapter should run on: the learner's
answer once it passes, the reference until then, so a stuck learner can keep going.
Set `MI_COURSE_STRICT=1` (the solution notebooks' tests do) to make any failure raise.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from typing import Any, Optional

from mi_course.grading import sandbox, seeding
from mi_course.grading.compare import compare, describe, max_abs_error
from mi_course.grading.exercise import Case, Exercise, Mistake, get_exercise
from mi_course.grading.progress import record

STRICT_ENV = "MI_COURSE_STRICT"
_expected_cache: dict[tuple[str, Any], list[Any]] = {}


@dataclass
class CheckResult:
    """Outcome of one check. status: "passed", "failed" or "not_implemented"."""

    exercise_id: str
    status: str
    message: str
    use: Any
    mistake: Optional[Mistake] = None

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def __repr__(self) -> str:
        return f"<CheckResult {self.exercise_id}: {self.status}>"


def check(exercise_id: str, answer: Any, *, quiet: bool = False) -> CheckResult:
    """Grade `answer` (a function, or a value for value exercises) against hidden cases."""
    ex = get_exercise(exercise_id)
    result = grade(ex, answer)
    record(ex.id, result.status)
    if not quiet:
        print(result.message)
    if not result.passed and os.environ.get(STRICT_ENV) == "1":
        raise AssertionError(f"{STRICT_ENV}=1 and the check failed:\n{result.message}")
    return result


def grade(ex: Exercise, answer: Any) -> CheckResult:
    """Grade without printing or recording: what `check` and the autograder tests share."""
    return _grade_value(ex, answer) if ex.kind == "value" else _grade_function(ex, answer)


def _header(ex: Exercise) -> str:
    return f"{ex.id} ({ex.title})"


def _fallback_note(ex: Exercise) -> str:
    what = "reference solution" if ex.kind == "function" else "reference answer"
    return f"  -> Until this passes, the rest of the chapter uses the {what}."


def _not_implemented(ex: Exercise, detail: str) -> CheckResult:
    msg = f"[ ] {_header(ex)}: {detail}.\n{_fallback_note(ex)}"
    return CheckResult(ex.id, "not_implemented", msg, ex.reference)


def _failed(ex: Exercise, lines: list[str], mistake: Optional[Mistake]) -> CheckResult:
    if mistake is not None:
        lines.append(f"  Hint (this looks like a known mistake, \"{mistake.name}\"): {mistake.hint}")
    msg = "\n".join([f"[x] {_header(ex)}: failed."] + lines + [_fallback_note(ex)])
    return CheckResult(ex.id, "failed", msg, ex.reference, mistake)


def _judge(ex: Exercise, case: Optional[Case], expected: Any, got: Any) -> Optional[str]:
    """None when `got` is acceptable, else the reason; uses `validate` when the exercise has one."""
    computed = ex.kind == "function"
    where = "the output" if computed else "your answer"
    if ex.validate is None or got is None:
        return compare(expected, got, ex.rtol, ex.atol, ex.check_dtype, where, computed)
    try:
        return ex.validate(case, got)
    except Exception as exc:  # an output so malformed the validator cannot read it
        return f"the output could not be checked ({type(exc).__name__}: {exc}); got {describe(got)}"


def _expected(ex: Exercise) -> list[Any]:
    """Reference outputs per case, computed once per session (cases are deterministic)."""
    key = (ex.id, ex.cases)
    if key not in _expected_cache:
        _expected_cache[key] = [ex.reference(*c.args, **c.kwargs) for c in ex.cases()]
    return _expected_cache[key]


def _match_mistake(ex: Exercise, case: Case, got: Any) -> Optional[Mistake]:
    """The known mistake whose output on this case agrees with the learner's, if any.

    Outputs are compared, never failure reasons: another bug that fails the same way gets no
    hint meant for a different one."""
    for mistake in ex.mistakes:
        if ex.kind == "value":
            wrong = mistake.wrong
        else:
            fresh = copy.deepcopy(case)
            wrong, failure = sandbox.call(mistake.wrong, fresh.args, fresh.kwargs, ex.timeout_s,
                                          watch_inputs=False)
            if failure is not None:
                continue
        if compare(wrong, got, ex.rtol, ex.atol, ex.check_dtype) is None:
            return mistake
    return None


def _describe_inputs(case: Case) -> str:
    parts = [describe(a, 2) for a in case.args] + [f"{k}={describe(v, 2)}" for k, v in case.kwargs.items()]
    return ", ".join(parts) if parts else "no arguments"


def _grade_function(ex: Exercise, fn: Any) -> CheckResult:
    if fn is ... or fn is None:
        return _not_implemented(ex, "not implemented yet")
    if not callable(fn):
        return _failed(ex, [f"  check expects your function, but got {describe(fn)}."], None)
    expected_all = _expected(ex)
    cases = ex.cases()
    for i, (case, expected) in enumerate(zip(cases, expected_all)):
        pristine = copy.deepcopy(case)
        got, failure = sandbox.call(fn, case.args, case.kwargs, ex.timeout_s)
        where = f"  Case {i + 1} of {len(cases)}" + (f" ({case.label})" if case.label else "")
        if failure is not None and failure.kind == "not_implemented":
            return _not_implemented(ex, failure.message)
        if failure is not None:
            return _failed(ex, [f"{where}: your function {failure.message}.",
                                f"  Inputs: {_describe_inputs(pristine)}"], None)
        reason = _judge(ex, pristine, expected, got)
        if reason is None and ex.seed_arg is not None:
            reason = seeding.seed_failure(ex, fn, pristine, expected)
            if reason is not None:  # each output is acceptable; together they show a misused seed
                return _failed(ex, [f"{where}: {reason}", f"  Inputs: {_describe_inputs(pristine)}"], None)
        if reason is None:
            continue
        lines = [f"{where}: {reason}.", f"  Inputs:   {_describe_inputs(pristine)}"]
        if ex.validate is None:
            lines += [f"  Expected: {describe(expected)}", f"  Got:      {describe(got)}"]
            err = max_abs_error(expected, got)
            if err is not None:
                lines.append(f"  Max abs error: {err:.3g} (tolerance rtol={ex.rtol:g}, atol={ex.atol:g})")
        return _failed(ex, lines, _match_mistake(ex, pristine, got))
    msg = f"[v] {_header(ex)}: passed all {len(cases)} cases."
    return CheckResult(ex.id, "passed", msg, fn)


def _grade_value(ex: Exercise, answer: Any) -> CheckResult:
    if answer is ...:
        return _not_implemented(ex, "not answered yet (replace the `...`)")
    reason = _judge(ex, None, ex.reference, answer)
    if reason is None:
        return CheckResult(ex.id, "passed", f"[v] {_header(ex)}: correct.", answer)
    mistake = _match_mistake(ex, Case(), answer)
    return _failed(ex, [f"  {reason[:1].upper()}{reason[1:]}."], mistake)
