"""The autograder: exercises declared as data, `check()` to grade, progress records."""

from mi_course.grading.check import CheckResult, check, grade
from mi_course.grading.exercise import Case, Exercise, Mistake, all_exercises, get_exercise, register

__all__ = ["Case", "CheckResult", "Exercise", "Mistake", "all_exercises", "check", "get_exercise", "grade", "register"]
