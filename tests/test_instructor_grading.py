"""Grading for a record (`mi-course grade`): one test per guarantee of the issue "Instructor grading
a learner cannot game", and every cheat that once earned credit kept as a submission that earns none.

The worker-backed tests share one small class, graded once (a few fresh workers, -j 2)."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

import grading_submissions as subs
from mi_course import cli
from mi_course.grading import check, get_exercise
from mi_course.grading.exercise import all_exercises
from mi_course.grading.record import (ClassGrade, SubmissionGrade, grade_class, handout, isolation, judge, plain,
                                      report, similarity)
from mi_course.grading.record.judge import ExerciseGrade, NotWrittenOut, value_answer

CH01 = handout.load_handout(handout.solution_path("ch01"))


def _cell(exercise_id: str) -> handout.AnswerCell:
    return next(c for c in CH01.answer_cells if exercise_id in c.exercise_ids)


# --- 2. only the learner's regions, rebuilt into the pristine hand-out ---------------------------------


@pytest.mark.parametrize("path", sorted((subs.ROOT / "solutions").glob("*.ipynb")), ids=lambda p: p.stem)
def test_regions_of_every_solution_rebuild_its_cells_and_name_every_exercise(path):
    hand = handout.load_handout(path)
    solution = nbformat.read(path, as_version=4)
    regions = handout.take_regions(solution, hand)
    sources = {c.get("id"): c.source for c in solution.cells}
    for ci, cell in enumerate(hand.answer_cells):
        rebuilt = handout.rebuild_cell(cell, [regions[(ci, si)] for si in range(len(cell.stubs))])
        assert rebuilt == sources[cell.cell_id]
        assert {stub.name for stub in cell.stubs} <= set(cell.exercise_ids)
    checked = {i for c in solution.cells if c.cell_type == "code" for i in handout.CHECK_CALL.findall(c.source)}
    assert set(hand.exercise_ids) == checked and hand.setup_sources


def test_code_outside_the_regions_is_not_taken():
    nb = subs.submission({"ch01.max_abs_cosine": "return vectors.sum() * 0"})
    cell = next(c for c in nb.cells if "ch01.max_abs_cosine" in c.source)
    cell.source = "import os  # a learner's extra line\n" + cell.source + "\nmax_abs_cosine = sp.max_abs_cosine"
    cell.id = "a-new-id"  # found again by its check call
    regions = handout.take_regions(nb, CH01)
    ci = CH01.answer_cells.index(_cell("ch01.max_abs_cosine"))
    rebuilt = handout.rebuild_cell(CH01.answer_cells[ci], [regions[(ci, 0)]])
    assert "return vectors.sum() * 0" in rebuilt
    assert "sp.max_abs_cosine" not in rebuilt and "import os" not in rebuilt
    assert rebuilt.endswith('max_abs_cosine = check("ch01.max_abs_cosine", max_abs_cosine).use')


def test_an_edited_docstring_still_yields_the_function_body():
    nb = subs.submission({"ch01.toy_forward": "h = torch.einsum('imn,bin->bim', W, x)\nreturn h"})
    cell = next(c for c in nb.cells if "ch01.toy_forward" in c.source)
    cell.source = cell.source.replace('"""x\' = ReLU(W^T W x + b), instance by instance."""', '"""My notes."""\n    # tried einsum')
    ci = CH01.answer_cells.index(_cell("ch01.toy_forward"))
    region = handout.take_regions(nb, CH01)[(ci, 0)]
    assert [line.strip() for line in region] == ["# tried einsum", "h = torch.einsum('imn,bin->bim', W, x)", "return h"]


def test_untouched_handout_keeps_every_stub_and_missing_cells_count_as_not_done():
    handout_nb = nbformat.read(subs.HANDOUT, as_version=4)
    regions = handout.take_regions(handout_nb, CH01)
    for (ci, si), region in regions.items():
        stub = CH01.answer_cells[ci].stubs[si]
        assert region == list(CH01.answer_cells[ci].lines[stub.start:stub.end])
    handout_nb.cells = handout_nb.cells[:3]
    assert set(handout.take_regions(handout_nb, CH01).values()) == {None}


def test_value_answers_must_be_written_out():
    cell = "\n".join(_cell("ch01.jl_constant").lines)
    assert value_answer(["jl_constant = 1 / 4"], cell, "ch01.jl_constant") == 0.25
    assert value_answer(["x = 3", "jl_constant = (x - 2) / 2 ** 2"], cell, "ch01.jl_constant") == 0.25
    assert value_answer(["jl_constant = ...  # your answer (ch01.jl_constant)"], cell, "ch01.jl_constant") is ...
    for looked_up in (["jl_constant = sp.JL_CONSTANT"], ["import mi_course", "jl_constant = 0.25"],
                      ["jl_constant = get_exercise('ch01.jl_constant').reference"], ["jl_constant = 10 ** 10 ** 10"]):
        with pytest.raises(NotWrittenOut):
            value_answer(looked_up, cell, "ch01.jl_constant")


# --- 2. plain data between worker and grader -----------------------------------------------------


def test_outputs_cross_as_plain_data_and_tensor_subclasses_do_not(tmp_path):
    value = {"a": (torch.arange(6).reshape(2, 3).T, 3, 2.5, float("nan")),
             "b": [torch.ones(2, dtype=torch.float64), np.arange(3.0), None, True, "x"],
             "c": torch.empty(4, 2, device="meta"), "d": torch.nn.Parameter(torch.zeros(2))}
    tensors: dict = {}
    spec = json.loads(json.dumps(plain.encode(value, tensors)))
    plain.save_tensors(tensors, tmp_path / "o")
    back = plain.decode(spec, plain.load_tensors(tmp_path / "o"))
    assert torch.equal(back["a"][0], value["a"][0]) and back["a"][1:3] == (3, 2.5) and np.isnan(back["a"][3])
    assert back["b"][0].dtype == torch.float64 and isinstance(back["b"][1], np.ndarray) and back["b"][2:] == [None, True, "x"]
    assert back["c"].device.type == "meta" and back["c"].shape == (4, 2) and type(back["d"]) is torch.Tensor

    class Anything(torch.Tensor):
        def __eq__(self, other):
            return True

    class Equal:
        def __eq__(self, other):
            return True

    for cheat in (torch.zeros(2).as_subclass(Anything), Equal(), [torch.zeros(1), Equal()]):
        with pytest.raises(plain.NotPlain):
            plain.encode(cheat, {})


def test_the_courses_own_dataclasses_cross_by_their_fields_and_lookalikes_do_not(tmp_path):
    from mi_course.grading.compare import compare
    from mi_course.sae import SAE

    weights = SAE(torch.randn(2, 3, 4), torch.zeros(2, 4), torch.randn(2, 4, 3), torch.zeros(2, 3))
    tensors: dict = {}
    spec = json.loads(json.dumps(plain.encode(weights, tensors)))
    plain.save_tensors(tensors, tmp_path / "o")
    back = plain.decode(spec, plain.load_tensors(tmp_path / "o"))
    assert type(back) is SAE and compare(weights, back, 0, 0) is None
    assert "W_dec" in compare(weights, SAE(weights.W_enc, weights.b_enc, -weights.W_dec, weights.b_dec), 1e-4, 1e-5)

    @dataclasses.dataclass
    class Impostor:  # claims the course's module and name, but is not the course's class
        W_enc: torch.Tensor

    Impostor.__module__, Impostor.__qualname__ = "mi_course.sae", "SAE"
    with pytest.raises(plain.NotPlain):
        plain.encode(Impostor(torch.zeros(1)), {})


def test_answers_precomputed_on_the_public_cases_pass_self_grading_only():
    from mi_course.grading import grade

    region = subs.precomputed()["ch01.expected_interference"]
    scope = {"torch": torch}
    exec("def answer(W, p):\n" + textwrap.indent(region, "    "), scope)
    assert grade(get_exercise("ch01.expected_interference"), scope["answer"]).passed  # seed 0: the public cases
    hidden = judge.hidden(get_exercise("ch01.expected_interference"), seed=12345)
    assert not grade(hidden, scope["answer"]).passed


def test_replay_answers_repeated_inputs_in_the_order_the_worker_ran_them():
    args = (torch.ones(2),)
    fp = plain.fingerprint(args, {})
    tensors: dict = {}
    calls = [{"fingerprint": fp, "output": plain.encode(torch.zeros(1), tensors)},
             {"fingerprint": fp, "output": plain.encode(torch.ones(1), tensors)},
             {"fingerprint": "other", "failure": "exception", "message": "raised ValueError: bad (in f, line 2)"}]
    answer = judge.replay(calls, tensors)
    assert answer(*args).item() == 0 and answer(*args).item() == 1 and answer(*args).item() == 1
    with pytest.raises(Exception, match="no output for this case"):
        answer(torch.zeros(3))


def test_fingerprints_name_inputs_by_content():
    import copy
    from functools import partial

    g = torch.Generator().manual_seed(3)
    args = (torch.arange(4.0), 2, partial(torch.rand, 3, generator=g))
    same = plain.fingerprint(*copy.deepcopy((args, {"k": g})))
    assert plain.fingerprint(args, {"k": g}) == same
    g.manual_seed(4)
    assert plain.fingerprint(args, {"k": g}) != same


# --- 3. references locked; pasted source flagged ----------------------------------------------------

GUARD_SCRIPT = """
import functools, os, subprocess, sys
from pathlib import Path
import mi_course.superposition as sp
from mi_course.grading.record import guard
box = Path(sys.argv[1])
alias, wrapped = sp.max_abs_cosine, functools.partial(sp.max_abs_cosine)
guard.lock_functions([sp.max_abs_cosine], ["torch.nn.functional.relu"])
guard.fence(box, [Path(sp.__file__).parent])
def attempt(fn):
    try:
        fn()
        return "ok"
    except Exception as exc:
        return str(exc)
import torch
print(attempt(lambda: alias(torch.eye(2))))
print(attempt(lambda: wrapped(torch.eye(2))))
print(attempt(lambda: torch.nn.functional.relu(torch.eye(2))))
print(attempt(lambda: sp.feature_norms(torch.ones(1, 2, 3))))
print(attempt(lambda: open(box / "inside.txt", "w").write("fine")))
print(attempt(lambda: open(box.parent / "outside.txt", "w")))
print(attempt(lambda: open(sp.__file__).read()))
print(attempt(lambda: subprocess.run(["true"])))
print(attempt(lambda: os.kill(os.getppid(), 0)))
learner = {}
exec(compile("def run(src):\\n    exec(src, {})\\n", "<answer cell for a test>", "exec"), learner)
print(attempt(lambda: learner["run"]("x = 1")))
print(attempt(lambda: torch.from_file(sp.__file__, size=10, dtype=torch.uint8)))
"""


def test_references_are_locked_and_the_worker_is_fenced_in(tmp_path):
    (tmp_path / "box").mkdir()
    out = subprocess.run([sys.executable, "-c", GUARD_SCRIPT, str(tmp_path / "box")], capture_output=True,
                         text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(subs.ROOT)})
    lines = out.stdout.strip().split("\n")
    assert len(lines) == 11, out.stderr
    assert all("uses the course's reference" in line for line in lines[:3]), lines[:3]
    assert lines[3] == "ok" and lines[4] == "ok"  # other course functions, and the worker's own folder
    assert "not allowed" in lines[5] and not (tmp_path / "outside.txt").exists()
    assert all("not allowed" in line for line in lines[6:]), lines[6:]


def test_the_course_functions_behind_a_thin_reference_are_locked_too():
    from mi_course.data.repeated_tokens import repeated_tokens
    from mi_course.grading.record import guard

    assert repeated_tokens in guard.behind(get_exercise("ch03.repeated_tokens").reference)
    assert guard.behind(get_exercise("ch01.max_abs_cosine").reference) == []


def test_helpers_a_chapter_hands_out_stay_open_and_references_never_do():
    """`SAE.encode` calls `encoder_preacts`, which is behind Chapter 2's `sae_forward` reference: the
    exercises whose answers may call `SAE.encode` hand it out, so it stays open; a reference named
    as handed out stays locked."""
    from mi_course import sae
    from mi_course.grading.record import guard

    chapter_2 = [e for e in all_exercises() if e.chapter == "ch02"]
    locked = {id(guard.underlying(f)) for f in guard.to_lock(chapter_2)}
    assert id(sae.sae_forward) in locked and id(sae.encoder_preacts) not in locked
    only_forward = {id(guard.underlying(f)) for f in guard.to_lock([get_exercise("ch02.sae_forward")])}
    assert id(sae.encoder_preacts) in only_forward, "nothing handed out: the helper behind the reference is locked"
    greedy = dataclasses.replace(get_exercise("ch02.remove_latent"), handed_out=("mi_course.sae.remove_latent",))
    assert id(sae.remove_latent) in {id(guard.underlying(f)) for f in guard.to_lock([greedy])}


def test_handed_out_names_resolve_and_are_no_exercises_reference():
    from mi_course.grading.record import guard

    references = {id(guard.underlying(e.reference)) for e in all_exercises() if callable(e.reference)}
    handed = [(e.id, name) for e in all_exercises() for name in e.handed_out]
    assert handed, "some chapter hands out a helper"
    for exercise_id, name in handed:
        assert name.startswith("mi_course."), (exercise_id, name)
        assert id(guard.underlying(guard._resolve(name)[2])) not in references, (exercise_id, name)


@pytest.mark.slow
@pytest.mark.parametrize("path", sorted((subs.ROOT / "solutions").glob("*.ipynb")), ids=lambda p: p.stem)
def test_every_solution_notebook_earns_full_credit_when_similar_answers_are_accepted(path, tmp_path):
    """The solutions are correct answers: recorded on hidden cases, with `--accept-similar` (many of
    them are the reference's code), each earns every exercise of its chapter."""
    session_progress = os.environ["MI_COURSE_PROGRESS"]
    os.environ["MI_COURSE_PROGRESS"] = str(tmp_path / "progress.json")
    try:
        graded = grade_class([path], seed=20261129, limit_s=400, jobs=1, accept_similar=True)
    finally:
        os.environ["MI_COURSE_PROGRESS"] = session_progress
    rows = graded.submissions[0].exercises
    assert rows and all(e.status == "passed" for e in rows), [(e.exercise_id, e.status, e.message[:200]) for e in rows
                                                             if e.status != "passed"]


def test_pasted_reference_source_is_flagged_even_renamed_and_a_rewrite_is_not():
    ref = get_exercise("ch01.classify_phase").reference
    pasted = similarity.reference_body(ref)
    renamed = pasted.replace("kept", "on").replace("phase", "out")
    assert similarity.similarity(pasted, ref) == 1.0 and similarity.similarity(renamed, ref) >= similarity.THRESHOLD
    assert similarity.similarity(subs.REWRITTEN["ch01.classify_phase"], ref) < similarity.THRESHOLD
    assert similarity.similarity("return p * x", get_exercise("ch01.expected_interference").reference) is None


# --- 1. isolation ---------------------------------------------------------------------------------------


def test_each_submission_gets_its_own_folders_and_a_changed_course_is_detected(tmp_path):
    with isolation.sandbox_dir() as box:
        env = isolation.sandbox_env(box)
        for key in ("HOME", "TMPDIR", "IPYTHONDIR", "JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "MPLCONFIGDIR",
                    "MI_COURSE_PROGRESS"):
            assert env[key].startswith(str(box)), key
    assert not box.exists()
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1")
    before = isolation.course_hashes([tmp_path / "pkg", tmp_path / "sitecustomize.py"])
    (tmp_path / "pkg" / "a.py").write_text("x = 2")
    (tmp_path / "sitecustomize.py").write_text("import os")
    after = isolation.course_hashes([tmp_path / "pkg", tmp_path / "sitecustomize.py"])
    assert isolation.changed(before, after) == [str(tmp_path / "pkg" / "a.py"), str(tmp_path / "sitecustomize.py")]


# --- 6. self-grading keeps today's flow ----------------------------------------------------------------


def test_self_grading_still_checks_records_and_falls_back(tmp_path):
    result = check("ch01.importance_weighted_mse", lambda out, x, importance: (x - out).sum(-1).mean(0), quiet=True)
    assert result.status == "failed" and result.use is get_exercise("ch01.importance_weighted_mse").reference
    progress = json.loads(Path(os.environ["MI_COURSE_PROGRESS"]).read_text())
    assert progress["ch01.importance_weighted_mse"]["status"] == "failed"


# --- 5. reports ----------------------------------------------------------------------------------------------


def test_reports_show_pass_rates_mistakes_to_reteach_and_flags(tmp_path):
    def sub(name, rows, problem="", flags=()):
        return SubmissionGrade(Path(name), [ExerciseGrade(*r) for r in rows], problem, list(flags))

    graded = ClassGrade("ch01", 5, [
        sub("a.ipynb", [("ch01.toy_forward", "passed", "ok"), ("ch01.r2_count", "failed", "x\n  why", "three")]),
        sub("b.ipynb", [("ch01.toy_forward", "failed", "x", "no ReLU", 0.5), ("ch01.r2_count", "failed", "x", "three")]),
        sub("c.ipynb", [("ch01.toy_forward", "not_graded", "x", "", 0, ["uses reference"]),
                        ("ch01.r2_count", "review", "x", "", 0, ["similar to reference (97%)"])],
            "timed out: stopped after the 60 s limit", ["timed out", "uses reference"]),
    ], 12.0, 2, 60)
    page = report.markdown(graded)
    assert "| ch01.toy_forward | 1/3 (33%) | 0 | 1 | 0 | 1 | no ReLU (1) |" in page
    assert "| ch01.r2_count | 0/3 (0%) | 1 | 2 | 0 | 0 | three (2) |" in page
    assert "c.ipynb, ch01.r2_count: similar to reference (97%)" in page
    assert "1/2: 1 submission; 0/2: 2 submissions" in page
    assert "- c.ipynb (0/2): timed out: stopped after the 60 s limit; timed out, uses reference" in page
    report.write_csv(graded, tmp_path / "g.csv")
    rows = list(csv.DictReader((tmp_path / "g.csv").open()))
    assert len(rows) == 6 and rows[1]["mistake"] == "three" and rows[1]["message"] == "x | why"
    assert rows[4]["flags"] == "uses reference" and rows[4]["problem"].startswith("timed out")


# --- the class: correct, untouched, cheating and broken submissions, graded together ------------------


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory):
    d = tmp_path_factory.mktemp("class")
    planted = [d / "instructor-ipython" / "profile_default" / "startup" / "00-cheat.py",
               subs.ROOT / "mi_course" / "grading" / "record" / "planted_by_a_submission.py"]
    paths = {
        "solution": Path(subs.SOLUTION),
        "rewritten": subs.write(subs.submission(subs.REWRITTEN), d / "rewritten.ipynb"),
        "untouched": subs.write(subs.submission({}), d / "untouched.ipynb"),
        "cheats_a": subs.write(subs.submission(subs.CHEATS_A, subs.KERNEL_CHEATS, first_cells=subs.KERNEL_CHEATS[2:3]),
                               d / "cheats_a.ipynb"),
        "cheats_b": subs.write(subs.submission(subs.CHEATS_B), d / "cheats_b.ipynb"),
        "planter_killer": subs.write(subs.submission({**subs.planter(planted), **subs.precomputed(),
                                                     **subs.GLOBAL_RNG, **subs.FROM_FILE, **subs.KILLER}),
                                     d / "planter_killer.ipynb"),
        "not_a_notebook": d / "not_a_notebook.ipynb",
    }
    paths["not_a_notebook"].write_text('{"cells": [')
    # The grader's own progress file, fresh: other tests of the session record into theirs.
    session_progress, progress = os.environ["MI_COURSE_PROGRESS"], d / "grader-progress.json"
    os.environ["MI_COURSE_PROGRESS"] = str(progress)
    try:
        graded = grade_class(list(paths.values()), seed=20261128, limit_s=150, jobs=2)
    finally:
        os.environ["MI_COURSE_PROGRESS"] = session_progress
    yield {name: sub for name, sub in zip(paths, graded.submissions)}, graded, planted, progress
    for path in planted:
        path.unlink(missing_ok=True)


def _statuses(sub: SubmissionGrade) -> dict[str, str]:
    return {e.exercise_id: e.status for e in sub.exercises}


def _row(sub: SubmissionGrade, exercise_id: str) -> ExerciseGrade:
    return next(e for e in sub.exercises if e.exercise_id == exercise_id)


def test_correct_submissions_earn_full_credit(graded_class):
    by_name, *_ = graded_class
    assert _statuses(by_name["rewritten"]) == {i: "passed" for i in subs.CH01}
    assert by_name["rewritten"].flags == [] and by_name["rewritten"].problem == ""
    solution = by_name["solution"]  # right on every hidden case; code identical to the reference waits for review
    assert set(_statuses(solution).values()) <= {"passed", "review"}
    for row in solution.exercises:
        assert (row.status == "review") == any(f.startswith("similar to reference") for f in row.flags), row


def test_untouched_handout_earns_nothing_and_is_not_implemented(graded_class):
    by_name, *_ = graded_class
    assert set(_statuses(by_name["untouched"]).values()) == {"not_implemented"}


def test_every_cheat_earns_nothing(graded_class):
    by_name, *_ = graded_class
    for name in ("cheats_a", "cheats_b", "planter_killer"):
        assert by_name[name].passed == 0, (name, _statuses(by_name[name]))


@pytest.mark.parametrize("name, exercise_id, says", [
    ("cheats_a", "ch01.max_abs_cosine", "uses the course's reference"),
    ("cheats_a", "ch01.nearly_orthogonal_vectors", "uses the course's reference"),
    ("cheats_a", "ch01.expected_interference", "uses the course's reference"),
    ("cheats_a", "ch01.sparse_features", "KeyError"),
    ("cheats_a", "ch01.toy_forward", "is None"),
    ("cheats_a", "ch01.importance_weighted_mse", "subclass of torch.Tensor"),
    ("cheats_a", "ch01.train_toy_models", "not allowed"),
    ("cheats_a", "ch01.classify_phase", "Held for review"),
    ("cheats_a", "ch01.feature_dimensionality", "is None"),
    ("cheats_a", "ch01.r2_count", "must be written out"),
    ("cheats_a", "ch01.jl_constant", "must be written out"),
    ("cheats_b", "ch01.max_abs_cosine", "not allowed"),
    ("cheats_b", "ch01.nearly_orthogonal_vectors", "could not get source"),
    ("cheats_b", "ch01.expected_interference", "gc.get_objects is not allowed"),
    ("cheats_b", "ch01.sparse_features", "subprocess.Popen is not allowed"),
    ("cheats_b", "ch01.toy_forward", "uses the course's reference"),
    ("cheats_b", "ch01.importance_weighted_mse", "cannot be graded"),
    ("cheats_b", "ch01.train_toy_models", "uses the course's reference"),
    ("cheats_b", "ch01.classify_phase", "Held for review"),
    ("cheats_b", "ch01.feature_dimensionality", "wrong values"),
    ("planter_killer", "ch01.nearly_orthogonal_vectors", "from_file is not allowed"),
    ("planter_killer", "ch01.expected_interference", "KeyError"),
    ("planter_killer", "ch01.sparse_features", "different outputs for the same seed"),
])
def test_each_cheat_is_caught_for_its_own_reason(graded_class, name, exercise_id, says):
    by_name, *_ = graded_class
    row = _row(by_name[name], exercise_id)
    assert row.status != "passed" and says in row.message, row.message


def test_the_kernel_may_say_anything_and_no_submission_reaches_another(graded_class):
    by_name, _, planted, progress = graded_class
    assert not any(path.exists() for path in planted)  # the fence refused the plants
    assert not progress.exists()  # the grader's own progress file: nobody wrote "passed" into it
    assert set(_statuses(by_name["untouched"]).values()) == {"not_implemented"}


def test_a_dead_worker_and_a_broken_file_get_rows_that_say_so(graded_class):
    by_name, graded, *_ = graded_class
    killed = by_name["planter_killer"]
    assert "died (killed by signal 9)" in killed.problem
    assert _row(killed, "ch01.toy_forward").status == "not_graded"
    assert _row(killed, "ch01.max_abs_cosine").status == "failed"  # graded before the worker died
    broken = by_name["not_a_notebook"]
    assert broken.problem.startswith("not a notebook") and {e.status for e in broken.exercises} == {"not_graded"}
    assert len(graded.submissions) == 7 and graded.jobs == 2


def test_a_hanging_notebook_is_cut_off_and_the_class_goes_on(tmp_path):
    hanging = subs.write(subs.submission(subs.HANGING), tmp_path / "hanging.ipynb")
    (tmp_path / "empty.ipynb").write_text("")
    start = time.monotonic()
    graded = grade_class([hanging, tmp_path / "empty.ipynb"], chapter="ch01", limit_s=3, jobs=2)
    assert time.monotonic() - start < 60
    cut, empty = graded.submissions
    assert cut.problem == "timed out: stopped after the 3 s limit" and "timed out" in cut.flags
    assert empty.problem.startswith("not a notebook") and cut.passed == empty.passed == 0


def test_a_submission_that_changes_the_course_is_marked_tampered(tmp_path):
    target = subs.ROOT / "mi_course" / "grading" / "record" / "tampered_by_a_submission.safetensors"
    try:
        tamperer = subs.write(subs.submission(subs.tamperer(target)), tmp_path / "tamperer.ipynb")
        graded = grade_class([tamperer], chapter="ch01", limit_s=150, jobs=1)
        sub = graded.submissions[0]
        assert target.exists() and "tampered" in sub.flags and str(target) in sub.problem
        assert {e.status for e in sub.exercises} == {"not_graded"}
    finally:
        target.unlink(missing_ok=True)


def test_cli_grade_writes_the_csv_and_the_class_report(tmp_path, capsys):
    bad = tmp_path / "bad.ipynb"
    bad.write_text("not json")
    out = tmp_path / "grades.csv"
    assert cli.main(["grade", str(bad), "--chapter", "ch01", "--out", str(out), "-j", "2", "--timeout", "30"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 11 and {r["status"] for r in rows} == {"not_graded"}
    assert "# Class report: ch01, 1 submissions" in out.with_suffix(".md").read_text()
    assert "bad.ipynb: 0/11 passed" in capsys.readouterr().out
