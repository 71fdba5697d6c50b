"""The fresh process that runs a submission's answers: `python -m mi_course.grading.record.worker BOX`.

BOX/job.json says which cells to run and the secret seed. In order, the worker:
1. runs the hand-out's own set-up cells (pristine: imports, `setup()`, models);
2. builds every exercise's hidden cases from the seed, and fingerprints them;
3. locks the references (and the course functions they call) and fences itself in (`guard`):
   from here on, learner code may run;
4. runs the answer cells (hand-out cells with the learner's regions), where `check` only takes
   note of the answer it is handed;
5. calls each answer on every hidden case (a fresh copy each time, under the exercise's time
   limit; seeded exercises again as `grade()` will ask) and appends the outputs, as plain data,
   to BOX/results.jsonl and BOX/out/.

The worker never sees a reference output: there is nothing in it to look up.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from mi_course.grading import Case, get_exercise, sandbox, seeding
from mi_course.grading.record import guard, plain

WORKER_ERROR = 3
"""The exit code of a worker that failed itself (a grading bug, not the learner's)."""


class _Noted:
    """What `check` returns in the worker: `.use` is the learner's own answer."""

    def __init__(self, answer: Any) -> None:
        self.use = answer
        self.passed = True


def _run_cell(source: str, namespace: dict, label: str) -> str | None:
    """Execute one cell; None, or the one-line error it stopped with."""
    try:
        exec(compile(source, f"<{label}>", "exec"), namespace)
    except BaseException as exc:  # a learner's region may raise anything, SystemExit included
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    return None


def _call_record(ex: Any, answer: Any, case: Any, rng: int | None, tensors: dict[str, Any]) -> dict:
    """One call of the answer on a fresh copy of a case, as plain data (tensors into `tensors`).
    `rng` seeds the global RNGs first, as the seeded-exercise check does."""
    fresh = copy.deepcopy(case)
    start = time.perf_counter()
    with seeding.global_rng(rng) if rng is not None else contextlib.nullcontext():
        out, failure = sandbox.call(answer, fresh.args, fresh.kwargs, ex.timeout_s)
    seconds = round(time.perf_counter() - start, 4)
    if failure is not None and failure.kind != "in_place":
        return {"failure": failure.kind, "message": failure.message, "seconds": seconds}
    try:
        spec = plain.encode(out, tensors)
    except plain.NotPlain as exc:
        return {"failure": "not_plain", "message": f"returned {exc}", "seconds": seconds}
    record: dict[str, Any] = {"output": spec, "seconds": seconds}
    if failure is not None:
        record.update(failure="in_place", message=failure.message)
    return record


def _calls(ex: Any, case: Case) -> list[tuple[Case, int | None]]:
    """The calls `grade()` makes for a case: once as given; for a seeded exercise, twice more with
    the global RNGs in different states, and once with each other seed `seeding` may try."""
    if ex.seed_arg is None:
        return [(case, None)]
    seed = inspect.signature(ex.reference).bind(*case.args, **case.kwargs).arguments[ex.seed_arg]
    others = [(seeding.with_seed(ex, case, other), 1) for other in seeding.other_seeds(seed)]
    return [(case, None), (case, 1), (case, 2), *others]


def main(box: Path) -> int:
    job = json.loads((box / "job.json").read_text())
    results = (box / "results.jsonl").open("a")
    out_dir = box / "out"
    out_dir.mkdir(exist_ok=True)

    namespace: dict[str, Any] = {"__name__": "__main__"}
    for i, source in enumerate(job["setup"]):  # 1. the hand-out's own set-up
        error = _run_cell(source, namespace, f"set-up cell {i + 1}")
        if error:
            results.write(json.dumps({"setup_error": error}) + "\n")
            return 0

    exercises = [get_exercise(i) for i in job["exercises"]]  # 2. hidden cases from the secret seed
    locked = guard.to_lock(exercises)
    references = {id(guard.underlying(f)) for f in locked}
    cases, embedding = {}, set()
    for ex in exercises:
        embedded: set[int] = set()
        cases[ex.id] = [(Case(guard.unlocked_inputs(c.args, references, embedded),
                              guard.unlocked_inputs(c.kwargs, references, embedded), c.label), rng)
                        for case in ex.cases(seed=job["seed"]) for c, rng in _calls(ex, case)]
        if embedded:
            embedding.add(ex.id)
    # an exercise whose inputs carry another's reference (unlocked) is run after all the others
    exercises.sort(key=lambda ex: ex.id in embedding)
    prints = {ex.id: [plain.fingerprint(c.args, c.kwargs) for c, _ in copy.deepcopy(cases[ex.id])]
              for ex in exercises}

    guard.lock_functions(locked, [name for ex in exercises for name in ex.forbidden])  # 3. lock, fence
    guard.fence(box, [Path(p) for p in job["protected"]])

    answers: dict[str, Any] = {}
    cell_errors: dict[str, str] = {}

    def noting_check(exercise_id: str, answer: Any, **_: Any) -> _Noted:
        if exercise_id in expected_here:
            answers[exercise_id] = answer
        return _Noted(answer)

    for cell in job["cells"]:  # 4. the answer cells; `check` only takes note
        expected_here = set(cell["exercises"])
        namespace["check"] = noting_check
        error = _run_cell(cell["source"], namespace, f"{guard.LEARNER_CODE[1:]} for {', '.join(cell['exercises'])}")
        for exercise_id in cell["exercises"]:
            if error and exercise_id not in answers:
                cell_errors[exercise_id] = error

    for ex in exercises:  # 5. every answer on every hidden case
        row: dict[str, Any] = {"exercise": ex.id, "calls": []}
        if ex.id in cell_errors:
            row["cell_error"] = cell_errors[ex.id]
        elif ex.id not in answers or answers[ex.id] is ... or answers[ex.id] is None:
            row["missing"] = True
        else:
            tensors: dict[str, Any] = {}
            for (case, rng), fp in zip(cases[ex.id], prints[ex.id]):
                row["calls"].append({"fingerprint": fp, **_call_record(ex, answers[ex.id], case, rng, tensors)})
            plain.save_tensors(tensors, out_dir / f"{job['exercises'].index(ex.id)}")
        results.write(json.dumps(row) + "\n")
        results.flush()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(Path(sys.argv[1])))
    except Exception:
        sys.stdout.flush()  # the hand-out's own prints first, so the log ends with the error
        traceback.print_exc()
        sys.exit(WORKER_ERROR)
