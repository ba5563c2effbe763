"""Runs manual and reference side by side on the same parameters and data, and compares them."""

from crosscheck.compare import Row, errors
from crosscheck.problems import Problem, and_example, example, mazur_example, random_problem, xor_example
from crosscheck.run import CheckReport, check, compare_finite_differences, compare_gradients, compare_trajectories

__all__ = [
    "Row",
    "errors",
    "Problem",
    "and_example",
    "example",
    "mazur_example",
    "random_problem",
    "xor_example",
    "CheckReport",
    "check",
    "compare_finite_differences",
    "compare_gradients",
    "compare_trajectories",
]
