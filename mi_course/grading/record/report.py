"""What the instructor reads: a CSV (submission x exercise) and a one-page Markdown class report."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mi_course.grading.record import ClassGrade

CSV_FIELDS = ["submission", "exercise", "status", "mistake", "seconds", "flags", "problem", "message"]


def write_csv(graded: "ClassGrade", path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for sub in graded.submissions:
            for ex in sub.exercises:
                writer.writerow({"submission": str(sub.path), "exercise": ex.exercise_id, "status": ex.status,
                                 "mistake": ex.mistake, "seconds": f"{ex.seconds:.3f}",
                                 "flags": "; ".join(ex.flags), "problem": sub.problem,
                                 "message": one_line(ex.message) if ex.status != "passed" else ""})


def one_line(message: str) -> str:
    """A check's message on one line, without the self-grading note about the fallback."""
    return " | ".join(ln.strip() for ln in message.split("\n") if ln.strip() and not ln.strip().startswith("->"))


def markdown(graded: "ClassGrade", top: int = 3) -> str:
    """Pass rate per exercise, the known mistakes to re-teach, and every flag, on one page."""
    subs = graded.submissions
    ids = list(dict.fromkeys(e.exercise_id for s in subs for e in s.exercises))
    lines = [f"# Class report: {graded.chapter}, {len(subs)} submissions",
             "",
             f"Graded on hidden cases (seed {graded.seed}) in {graded.seconds:.0f} s with -j {graded.jobs} "
             f"and a {graded.limit_s:g} s limit per notebook. Credit counts `passed` only; `review` is "
             "held until you have read the code.",
             "",
             "| exercise | passed | review | failed | not done | not graded | most common known mistakes |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for exercise_id in ids:
        rows = [e for s in subs for e in s.exercises if e.exercise_id == exercise_id]
        count = Counter(e.status for e in rows)
        mistakes = Counter(e.mistake for e in rows if e.mistake).most_common(top)
        shown = ", ".join(f"{name} ({n})" for name, n in mistakes) or "-"
        lines.append(f"| {exercise_id} | {count['passed']}/{len(rows)} ({count['passed'] / max(len(rows), 1):.0%}) "
                     f"| {count['review']} | {count['failed']} | {count['not_implemented']} "
                     f"| {count['not_graded']} | {shown} |")
    credit = Counter(f"{s.passed}/{len(s.exercises)}" for s in subs)
    lines += ["", "## Credit", "",
              "; ".join(f"{c}: {n} submission{'s' if n > 1 else ''}"
                        for c, n in sorted(credit.items(), key=lambda kv: -int(kv[0].split("/")[0]))),
              "", "## Problems and flags", ""]
    noted = [s for s in subs if s.problem or s.flags]
    lines += [f"- {Path(s.path).name} ({s.passed}/{len(s.exercises)}): "
              f"{'; '.join(filter(None, [s.problem, ', '.join(s.flags)]))}" for s in noted] or ["- none"]
    flagged = [(s, e) for s in subs for e in s.exercises if e.flags]
    lines += ["", "## Answers to review", ""]
    lines += [f"- {Path(s.path).name}, {e.exercise_id}: {', '.join(e.flags)}" for s, e in flagged] or ["- none"]
    return "\n".join(lines) + "\n"
