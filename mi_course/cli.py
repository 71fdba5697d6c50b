"""The `mi-course` command: doctor | build | check-sync | progress | grade | train | run."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from mi_course import notebooks


def _chapter_titles() -> dict[str, str]:
    """"ch01" -> "01_superposition", from the solution notebooks present."""
    src = notebooks.repo_root() / "solutions"
    return {f"ch{p.stem[:2]}": p.stem for p in sorted(src.glob("*.ipynb"))}


def cmd_progress(args: argparse.Namespace) -> int:
    from mi_course.grading import all_exercises
    from mi_course.grading.progress import load_progress, progress_path

    done = load_progress(Path(args.file) if args.file else None)
    titles = _chapter_titles()
    by_chapter: dict[str, list] = defaultdict(list)
    for ex in all_exercises():
        by_chapter[ex.chapter].append(ex)
    print(f"Progress from {args.file or progress_path()}")
    print(f"{'chapter':<28}{'passed':>8}{'tried':>7}{'total':>7}")
    for chapter in sorted(by_chapter):
        exs = by_chapter[chapter]
        statuses = [done.get(ex.id, {}).get("status") for ex in exs]
        passed = statuses.count("passed")
        tried = sum(s not in (None, "not_implemented") for s in statuses)
        print(f"{titles.get(chapter, chapter):<28}{passed:>8}{tried:>7}{len(exs):>7}")
        if args.verbose:
            for ex, status in zip(exs, statuses):
                print(f"    {status or 'not started':<16} {ex.id}  {ex.title}")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    return notebooks.main(["--build"])


def cmd_check_sync(args: argparse.Namespace) -> int:
    return notebooks.main(["--check"])


def cmd_grade(args: argparse.Namespace) -> int:
    """Grade submissions for a record: hidden cases, a fresh worker each, references locked away."""
    from mi_course.grading.record import DEFAULT_LIMIT_S, grade_class, report

    def progress(sub) -> None:
        note = f"; {sub.problem}" if sub.problem else ""
        print(f"{sub.path}: {sub.passed}/{len(sub.exercises)} passed ({sub.seconds:.0f} s){note}", flush=True)

    graded = grade_class(list(map(Path, args.notebooks)), chapter=args.chapter, seed=args.seed,
                         limit_s=args.timeout or DEFAULT_LIMIT_S, jobs=args.jobs, accept_similar=args.accept_similar,
                         on_done=progress)
    out = Path(args.out)
    report.write_csv(graded, out)
    page = out.with_suffix(".md")
    page.write_text(report.markdown(graded))
    print(f"{graded.chapter}: {len(graded.submissions)} submissions in {graded.seconds:.0f} s; "
          f"wrote {out} and {page}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from mi_course.train.__main__ import main as train_main

    return train_main(args.rest)


def running_as_root() -> bool:
    """True for the superuser on POSIX (containers, many cloud notebooks); never on Windows."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


def jupyterlab_command(args: argparse.Namespace) -> list[str]:
    """The JupyterLab command line `mi-course run` becomes: our folder, then the learner's options."""
    folder = notebooks.repo_root() / ("solutions" if args.solutions else "chapters")
    command = [sys.executable, "-m", "jupyterlab", f"--notebook-dir={folder}"]
    if running_as_root() and "--allow-root" not in args.rest:
        print("mi-course: running as root (a container?), so JupyterLab gets --allow-root", file=sys.stderr)
        command.append("--allow-root")
    return command + args.rest


def cmd_run(args: argparse.Namespace) -> int:
    """Become JupyterLab (exec), so Ctrl-C and SIGTERM reach it and nothing is left running."""
    command = jupyterlab_command(args)
    print(" ".join(command), flush=True)
    if os.name == "posix":
        os.execv(sys.executable, command)
    return subprocess.call(command)  # Windows has no exec that keeps the console's process


def cmd_doctor(args: argparse.Namespace) -> int:
    from mi_course.doctor import run_doctor

    return run_doctor()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mi-course", description="The mi-course helper command.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("doctor", help="check versions, the torch build, device, threads, models and the hub").set_defaults(fn=cmd_doctor)
    sub.add_parser("build", help="write chapters/ from solutions/").set_defaults(fn=cmd_build)
    sub.add_parser("check-sync", help="fail if chapters/ is not what build writes").set_defaults(fn=cmd_check_sync)
    p = sub.add_parser("progress", help="your progress, per chapter")
    p.add_argument("--file", help="a progress JSON file (default: yours)")
    p.add_argument("-v", "--verbose", action="store_true", help="list every exercise")
    p.set_defaults(fn=cmd_progress)
    p = sub.add_parser("grade", help="grade submitted notebooks for a record (hidden cases, references locked)")
    p.add_argument("notebooks", nargs="+")
    p.add_argument("--out", default="grades.csv", help="the CSV to write; the class report goes next to it (.md)")
    p.add_argument("--timeout", type=float, help="seconds per notebook (default: 180)")
    p.add_argument("-j", "--jobs", type=int, default=1, help="notebooks graded at a time")
    p.add_argument("--chapter", help="chNN (default: the chapter the submissions check)")
    p.add_argument("--seed", type=int, help="the hidden cases' seed (default: a fresh secret one)")
    p.add_argument("--accept-similar", action="store_true",
                   help="credit answers too similar to the reference instead of holding them for review")
    p.set_defaults(fn=cmd_grade)
    sub.add_parser("train", help="retrain a shipped model: mi-course train NAME [--seed S] [--out DIR]",
                   add_help=False).set_defaults(fn=cmd_train)
    p = sub.add_parser(
        "run", help="open JupyterLab on chapters/ (other options go to JupyterLab)", allow_abbrev=False,
        usage="mi-course run [-h] [--solutions] [JupyterLab options ...]",
        description="Open JupyterLab on the learner's notebooks in chapters/.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Every other option goes to JupyterLab unchanged, for example:\n"
               "  mi-course run --no-browser --port 8899\n"
               "`jupyter lab --help` lists them. Run as root, it adds --allow-root and says so.")
    p.add_argument("--solutions", action="store_true", help="open the completed notebooks in solutions/ instead")
    p.set_defaults(fn=cmd_run)
    return parser


PASS_THROUGH = ("train", "run")


def main(argv: list[str] | None = None) -> int:
    """Dispatch; `train` and `run` hand every further argument to the training CLI or JupyterLab."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and args.command not in PASS_THROUGH:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.rest = rest
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
