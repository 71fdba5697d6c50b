"""Grading for a record: `mi-course grade`, which a learner's notebook cannot talk into a grade.

Self-grading (`check` in the learner's notebook) is for learning; this is for an instructor's
record. Each submission goes through the same short pipeline, in this order:

1. `read_submission`   the file is a notebook (else a row says what it is);
2. `take_regions`      only the learner's solution regions are taken out of it (`handout`);
3. `rebuild_cell`      ... and put back into the pristine hand-out built from solutions/;
4. `run_worker`        a fresh process, in a throw-away folder (`isolation`), runs the hand-out's
                       set-up, locks the references away (`guard`), and calls each answer on
                       hidden cases drawn from a seed the learner never saw (`worker`);
5. `judge_*`           this process compares the plain outputs with the reference (`judge`);
6. `similarity`        a region too close to the reference's source is held for review;
7. `course_hashes`     the course is unchanged, or the submission is marked tampered.

`grade_class` (in `pipeline`) runs it over a class, `-j N` at a time; `report` writes the CSV
and the one-page class report. The worker imports this package too, so nothing heavy is
imported here.
"""

from typing import Any

_PIPELINE = ("ClassGrade", "DEFAULT_LIMIT_S", "SubmissionGrade", "grade_class", "grade_submission")


def __getattr__(name: str) -> Any:
    if name in _PIPELINE:
        from mi_course.grading.record import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
