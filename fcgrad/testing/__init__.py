"""The pytest helpers: hold your own backward to JAX autodiff (or finite differences) and name what is wrong.

    from fcgrad.testing import assert_backward_matches

- ``assert_backward_matches(forward, backward, shapes)``: one layer's backward against ``jax.vjp`` of its
  forward (``fcgrad/testing/backward.py``), with ``residual_z`` compared when returned and the suspect named
  (``fcgrad/testing/layer_checks.py``);
- ``assert_backward_matches_fd``: the same against central finite differences, for a NumPy forward;
- ``assert_derivation_matches``: a whole derivation, term by term (``fcgrad/derivation/``).
"""

from fcgrad.derivation.report import assert_derivation_matches
from fcgrad.testing import layer_checks
from fcgrad.testing.backward import BACKWARD_ABS_TOL, BACKWARD_REL_TOL, GradientCheck
from fcgrad.testing.backward import assert_backward_matches as _three_gradients
from fcgrad.testing.fd_oracle import assert_backward_matches_fd

assert_backward_matches = layer_checks.wider(_three_gradients)

__all__ = [
    "assert_backward_matches",
    "assert_backward_matches_fd",
    "assert_derivation_matches",
    "GradientCheck",
    "BACKWARD_REL_TOL",
    "BACKWARD_ABS_TOL",
]
