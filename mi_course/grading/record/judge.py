"""In the grader's process: turn the worker's plain outputs into grades.

The worker's outputs are replayed into the same `grade()` a learner's `check` uses, with the
exercise's cases drawn from the secret seed: the reference runs here, in the grader, on cases
rebuilt here, and each call of the "answer" returns what the learner's code returned in the
worker for the case with the same fingerprint. So messages, tolerances, validators and known
mistakes are exactly those of self-grading.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import operator
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from mi_course.grading import Exercise, grade
from mi_course.grading.record import plain
from mi_course.grading.record.guard import LOCKED_MESSAGE

FENCED_MESSAGE = "grading:"


@dataclass
class ExerciseGrade:
    """One row of the class's CSV. status: passed, failed, not_implemented, review, not_graded."""

    exercise_id: str
    status: str
    message: str
    mistake: str = ""
    seconds: float = 0.0
    flags: list[str] = field(default_factory=list)


def hidden(ex: Exercise, seed: int) -> Exercise:
    """The exercise with its cases drawn from `seed` (what `grade()` will run)."""
    return dataclasses.replace(ex, cases=functools.partial(ex.cases, seed=seed))


def _raise_as(name: str, message: str) -> None:
    raise type(name, (Exception,), {})(message)


def replay(calls: list[dict], tensors: dict[str, Any]) -> Callable:
    """A stand-in for the learner's function that answers each case with the worker's output
    (the k-th call with the same inputs gets the worker's k-th output for them)."""
    by_print: dict[str, list[dict]] = {}
    for c in calls:
        by_print.setdefault(c["fingerprint"], []).append(c)
    asked: dict[str, int] = {}

    def answer(*args: Any, **kwargs: Any) -> Any:
        fp = plain.fingerprint(args, kwargs)
        if fp not in by_print:
            _raise_as("GraderError", "the worker returned no output for this case")
        n = asked[fp] = asked.get(fp, -1) + 1  # the same inputs again: the worker's next call
        call = by_print[fp][min(n, len(by_print[fp]) - 1)]
        kind, message = call.get("failure"), call.get("message", "")
        if kind == "not_implemented":
            raise NotImplementedError(message)
        if kind == "exception" and message.startswith("raised ") and ": " in message:
            name, _, rest = message[len("raised "):].partition(": ")
            _raise_as(name, rest)
        if kind is not None:
            _raise_as({"timeout": "TimeLimit", "in_place": "InPlaceModification",
                       "not_plain": "NotPlainData"}.get(kind, "Error"), message)
        return plain.decode(call["output"], tensors)

    return answer


def flags_for(*messages: str) -> list[str]:
    text = " ".join(messages)
    out = []
    if LOCKED_MESSAGE in text:
        out.append("uses reference")
    if FENCED_MESSAGE in text:
        out.append("fenced")
    return out


def judge_function(ex: Exercise, row: Optional[dict], tensors: dict[str, Any]) -> ExerciseGrade:
    """`ex` is the exercise with its hidden cases (`hidden`)."""
    if row is None:
        return ExerciseGrade(ex.id, "not_graded", "the worker stopped before this exercise")
    if row.get("missing"):
        result = grade(ex, None)
        return ExerciseGrade(ex.id, result.status, result.message)
    if "cell_error" in row:
        msg = f"[x] {ex.id}: the answer cell stopped with {row['cell_error']}"
        return ExerciseGrade(ex.id, "failed", msg, flags=flags_for(row["cell_error"]))
    result = grade(ex, replay(row["calls"], tensors))
    seconds = sum(c.get("seconds", 0.0) for c in row["calls"])
    return ExerciseGrade(ex.id, result.status, result.message, result.mistake.name if result.mistake else "",
                         round(seconds, 3), flags_for(*(c.get("message", "") for c in row["calls"])))


# --- value answers: written out, evaluated here --------------------------------------------------

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.FloorDiv: operator.floordiv, ast.Pow: operator.pow, ast.Mod: operator.mod,
        ast.USub: operator.neg, ast.UAdd: operator.pos}


class NotWrittenOut(ValueError):
    """A value answer that is computed (or looked up) rather than written out."""


def _value(node: ast.AST, names: dict[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name) and node.id in names:
        return names[node.id]
    if isinstance(node, (ast.Tuple, ast.List)):
        items = [_value(e, names) for e in node.elts]
        return tuple(items) if isinstance(node, ast.Tuple) else items
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_value(node.operand, names))
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        if isinstance(node.op, ast.Pow) and abs(_value(node.right, names)) > 100:
            raise NotWrittenOut("an exponent that large")
        return _OPS[type(node.op)](_value(node.left, names), _value(node.right, names))
    raise NotWrittenOut(ast.unparse(node))


def value_answer(region: Optional[list[str]], check_call_source: str, exercise_id: str) -> Any:
    """The learner's value: the region's assignments, written out (numbers, strings, tuples and
    arithmetic on them), fed to the expression the hand-out passes to `check`."""
    if region is None:
        return ...
    names: dict[str, Any] = {}
    for stmt in ast.parse("\n".join(region)).body:
        if isinstance(stmt, ast.Assign) and all(isinstance(t, ast.Name) for t in stmt.targets):
            value = _value(stmt.value, names)
            names.update({t.id: value for t in stmt.targets})
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
            names[stmt.target.id] = _value(stmt.value, names)
        elif not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)) and not isinstance(stmt, ast.Pass):
            raise NotWrittenOut(ast.unparse(stmt).split("\n")[0])
    for node in ast.walk(ast.parse(check_call_source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "check" \
                and len(node.args) >= 2 and isinstance(node.args[0], ast.Constant) and node.args[0].value == exercise_id:
            return _value(node.args[1], names)
    raise NotWrittenOut(f"no check call for {exercise_id}")


def judge_value(ex: Exercise, region: Optional[list[str]], cell_source: str) -> ExerciseGrade:
    try:
        answer = value_answer(region, cell_source, ex.id)
    except (NotWrittenOut, SyntaxError, ArithmeticError, TypeError) as exc:
        detail = f"{type(exc).__name__}: {exc}" if not isinstance(exc, NotWrittenOut) else f"it reads `{exc}`"
        msg = (f"[x] {ex.id}: a recorded answer must be written out (a number, string or tuple, "
               f"or arithmetic on them); {detail}")
        return ExerciseGrade(ex.id, "failed", msg, flags=["not written out"])
    result = grade(ex, answer)
    return ExerciseGrade(ex.id, result.status, result.message, result.mistake.name if result.mistake else "")
