"""Errors raised for bad input and diverging runs.

They live in ``manual`` because it is the one package every other part may
import (``reference`` excepted, which stays independent of it).
"""


class FcgradError(ValueError):
    """Bad input: the message says what was expected and what came."""


class DivergenceError(FcgradError):
    """A training run whose loss stopped being finite.

    ``step`` is the index of the first step whose loss (at that step's
    parameters) is not finite.
    """

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step
