"""The grading pipeline for one submission and for a class (see the package docstring)."""

from __future__ import annotations

import functools
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import nbformat

from mi_course.grading import get_exercise
from mi_course.grading.record import handout as handouts
from mi_course.grading.record import isolation, plain, similarity
from mi_course.grading.record.judge import ExerciseGrade, hidden, judge_function, judge_value
from mi_course.grading.record.worker import WORKER_ERROR

DEFAULT_LIMIT_S = 180


@dataclass
class SubmissionGrade:
    """Everything graded about one submission. `problem` says why part of it was not graded."""

    path: Path
    exercises: list[ExerciseGrade] = field(default_factory=list)
    problem: str = ""
    flags: list[str] = field(default_factory=list)
    seconds: float = 0.0
    peak_mb: float = 0.0

    @property
    def passed(self) -> int:
        return sum(e.status == "passed" for e in self.exercises)


@dataclass
class WorkerRun:
    rows: dict[str, dict]
    tensors: dict[str, dict]
    problem: str
    peak_mb: float


class NotANotebook(ValueError):
    """A submission that cannot be read as a Jupyter notebook."""


def read_submission(path: Path) -> nbformat.NotebookNode:
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:  # bad JSON, not JSON, an unknown nbformat: all the same to a grader
        first = (str(exc).strip().splitlines() or [""])[0][:120]
        raise NotANotebook(f"not a notebook ({type(exc).__name__}: {first})") from None
    if not isinstance(nb.get("cells"), list):
        raise NotANotebook("not a notebook (no cells)")
    return nb


def chapter_of(nb: nbformat.NotebookNode) -> Optional[str]:
    """The chapter whose exercises the notebook checks most often ("ch01"), if any."""
    ids = [i for c in nb.cells if c.get("cell_type") == "code"
           for i in handouts.CHECK_CALL.findall(str(c.get("source", "")))]
    chapters = [i.split(".")[0] for i in ids]
    return max(set(chapters), key=chapters.count) if chapters else None


def run_worker(box: Path, job: dict, limit_s: float) -> WorkerRun:
    """Run the worker on `job` in `box`; kill it (and anything it started) past `limit_s`."""
    (box / "job.json").write_text(json.dumps(job))
    with open(box / "worker.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "mi_course.grading.record.worker", str(box)],
                                cwd=box / "work", env=isolation.sandbox_env(box), stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline, status, usage = time.monotonic() + limit_s, None, None
        while status is None:
            pid, status_, usage_ = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                status, usage = status_, usage_
            elif time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                _, status, usage = os.wait4(proc.pid, 0)
                status = "timeout"
            else:
                time.sleep(0.05)
        proc.returncode = 0  # reaped above
    rows, tensors = {}, {}
    results = box / "results.jsonl"
    for line in results.read_text().splitlines() if results.exists() else []:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "setup_error" in row:
            return WorkerRun({}, {}, f"the hand-out's set-up failed in the worker: {row['setup_error']}", 0.0)
        if isinstance(row, dict) and isinstance(row.get("exercise"), str) and row["exercise"] not in rows:
            rows[row["exercise"]] = row
            tensors[row["exercise"]] = plain.load_tensors(box / "out" / f"{job['exercises'].index(row['exercise'])}") \
                if row["exercise"] in job["exercises"] else {}
    problem = ""
    if status == "timeout":
        problem = f"timed out: stopped after the {limit_s:g} s limit"
    elif os.WIFSIGNALED(status):
        problem = f"the grading process died (killed by signal {os.WTERMSIG(status)}), like a dead kernel"
    elif os.WEXITSTATUS(status) == WORKER_ERROR:
        log = (box / "worker.log").read_text(errors="replace").strip().splitlines()
        problem = f"grading error in the worker: {log[-1] if log else 'no message'}"
    elif os.WEXITSTATUS(status) != 0:
        problem = f"the grading process died (exit code {os.WEXITSTATUS(status)}), like a dead kernel"
    return WorkerRun(rows, tensors, problem, usage.ru_maxrss / 1024 if usage else 0.0)


def _job(hand: handouts.Handout, regions: dict, seed: int) -> dict:
    cells = []
    for ci, cell in enumerate(hand.answer_cells):
        if all(stub.is_value for stub in cell.stubs):
            continue  # value answers are read as written, in this process (judge_value)
        source = handouts.rebuild_cell(cell, [regions[(ci, si)] for si in range(len(cell.stubs))])
        cells.append({"source": source, "exercises": list(cell.exercise_ids)})
    function_ids = [i for c in cells for i in c["exercises"] if get_exercise(i).kind == "function"]
    return {"setup": list(hand.setup_sources), "cells": cells, "exercises": function_ids, "seed": seed,
            "protected": [str(p) for p in isolation.course_paths()]}


def grade_submission(path: Path, hand: handouts.Handout, seed: int, limit_s: float = DEFAULT_LIMIT_S,
                     accept_similar: bool = False, watch: bool = True) -> SubmissionGrade:
    """The pipeline of the module docstring, for one submission."""
    start = time.perf_counter()
    before = isolation.course_hashes() if watch else None
    result = SubmissionGrade(Path(path))
    try:
        nb = read_submission(path)  # 1
    except NotANotebook as exc:
        result.problem = str(exc)
        result.exercises = [ExerciseGrade(i, "not_graded", str(exc)) for i in hand.exercise_ids]
        return result
    regions = handouts.take_regions(nb, hand)  # 2 (3 happens in _job)
    job = _job(hand, regions, seed)
    with isolation.sandbox_dir() as box:  # 4
        run = run_worker(box, job, limit_s)
    result.problem, result.peak_mb = run.problem, run.peak_mb
    for ci, cell in enumerate(hand.answer_cells):  # 5, 6
        for si, stub in enumerate(cell.stubs):
            ex = get_exercise(stub.name) if stub.name in cell.exercise_ids else None
            if ex is None:
                continue
            region = regions[(ci, si)]
            if ex.kind == "value":
                grade = judge_value(ex, region, "\n".join(cell.lines))
            else:
                grade = judge_function(hidden_exercise(ex.id, seed), run.rows.get(ex.id), run.tensors.get(ex.id, {}))
                if run.problem and ex.id not in run.rows:
                    grade.message = f"not graded: {run.problem}"
                _flag_similar(grade, region, ex.reference, accept_similar)
            result.exercises.append(grade)
    if before is not None:  # 7
        touched = isolation.changed(before, isolation.course_hashes())
        if touched:
            result.flags.append("tampered")
            result.problem = (result.problem + "; " if result.problem else "") + \
                f"tampered: changed {', '.join(touched[:3])}{' …' if len(touched) > 3 else ''}"
            for grade in result.exercises:
                grade.status, grade.flags = "not_graded", grade.flags + ["tampered"]
    result.flags += sorted({f for g in result.exercises for f in g.flags} - set(result.flags))
    if run.problem.startswith("timed out"):
        result.flags.append("timed out")
    result.seconds = round(time.perf_counter() - start, 2)
    return result


@functools.lru_cache(maxsize=None)
def hidden_exercise(exercise_id: str, seed: int):
    """One hidden version per exercise and seed, so `grade()` computes its reference outputs once
    for the whole class."""
    return hidden(get_exercise(exercise_id), seed)


def _flag_similar(grade: ExerciseGrade, region: Optional[list[str]], reference, accept: bool) -> None:
    if region is None:
        return
    ratio = similarity.similarity("\n".join(region), reference)
    if ratio is None or ratio < similarity.THRESHOLD:
        return
    grade.flags.append(f"similar to reference ({ratio:.0%})")
    if grade.status == "passed" and not accept:
        grade.status = "review"
        grade.message += f"\n  Held for review: the code is {ratio:.0%} similar to the course's reference."


@dataclass
class ClassGrade:
    chapter: str
    seed: int
    submissions: list[SubmissionGrade]
    seconds: float
    jobs: int
    limit_s: float


def grade_class(paths: list[Path], chapter: Optional[str] = None, seed: Optional[int] = None,
                limit_s: float = DEFAULT_LIMIT_S, jobs: int = 1, accept_similar: bool = False,
                on_done=None) -> ClassGrade:
    """Grade every submission (the rest go on whatever one of them does); `jobs` at a time.

    The course is hashed before and after each submission; with `jobs` > 1 a change is blamed on
    every submission that was running at the time (grade those again with jobs=1)."""
    start = time.perf_counter()
    seed = secrets.randbelow(2**31 - 1) + 1 if seed is None else seed
    if chapter is None:
        found = [c for c in (_peek_chapter(p) for p in paths) if c]
        if not found:
            raise ValueError("no submission calls check(...) on a chapter's exercise; pass --chapter chNN")
        chapter = max(set(found), key=found.count)
    hand = handouts.load_handout(handouts.solution_path(chapter))
    lock = threading.Lock()

    def one(path: Path) -> SubmissionGrade:
        graded = grade_submission(Path(path), hand, seed, limit_s, accept_similar)
        if on_done:
            with lock:
                on_done(graded)
        return graded

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        submissions = list(pool.map(one, paths))
    return ClassGrade(chapter, seed, submissions, round(time.perf_counter() - start, 1), jobs, limit_s)


def _peek_chapter(path: Path) -> Optional[str]:
    try:
        return chapter_of(read_submission(path))
    except NotANotebook:
        return None
