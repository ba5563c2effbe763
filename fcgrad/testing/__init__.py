"""The pytest helpers: hold your own backward to JAX autodiff (or finite differences) and name what is wrong.

    from fcgrad.testing import assert_backward_matches

- ``assert_backward_matches(forward, backward, shapes)``: one layer's backward against ``jax.vjp`` of its
  forward (``fcgrad/testing/backward.py``), with ``residual_z`` compared when returned, the catalogue's
  names on failing rows and the suspect named (``fcgrad/testing/layer_checks.py``), and the line of the
  backward where it went wrong, found by tracing it once after a failure (``fcgrad/testing/backward_trace.py``,
  on the recorder of ``fcgrad/testing/record.py``);
- ``assert_backward_matches_fd``: the same against central finite differences, for a NumPy forward;
- ``assert_derivation_matches``: a whole derivation, term by term (``fcgrad/derivation/``).

Each takes the user's layout as keywords: ``weights="in,out"|"out,in"``, ``samples="columns"|"rows"``.
"""

from fcgrad.derivation.report import assert_derivation_matches
from fcgrad.testing.backward import BACKWARD_ABS_TOL, BACKWARD_REL_TOL, GradientCheck, assert_backward_matches
from fcgrad.testing.fd_oracle import assert_backward_matches_fd

__all__ = [
    "assert_backward_matches",
    "assert_backward_matches_fd",
    "assert_derivation_matches",
    "GradientCheck",
    "BACKWARD_REL_TOL",
    "BACKWARD_ABS_TOL",
]
