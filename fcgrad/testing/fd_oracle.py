"""The layer helper with finite differences as its oracle, for a forward JAX cannot trace.

``assert_backward_matches_fd(forward, backward, shapes)`` has the contract of
``assert_backward_matches``, but ``forward`` is plain NumPy (Python branches on values, SciPy,
anything) and the reference gradients are central differences of
``L(inputs) = Σ residual_y ⊙ forward(inputs)``, in float64, with step ``FD_STEP`` (1e-6),
every entry of every checked input.

It is the WEAKER oracle: a central difference carries a truncation error O(h²) and a rounding
error about ε·|L|/h, so it can only confirm a gradient to about 1e-6 relative, not to the
1e-10 JAX gives, and it sees nothing at a kink (a perturbation across ReLU's 0 measures a
one-sided slope). It uses the rule ``fcgrad check`` uses: a gradient passes within
``FD_REL_TOL`` relative, or when its max|Δ| is below the rounding floor
``FD_NOISE_FACTOR·ε·max(1, Σ|residual_y ⊙ y|)/h`` (the sum's terms may cancel, but each
evaluation rounds like the sum of their magnitudes).
"""

from collections.abc import Callable, Mapping

import numpy as np

from fcgrad.diagnosis.layout import layout
from fcgrad.engine import tolerances as tol
from fcgrad.manual.errors import FcgradError
from fcgrad.manual.finite_diff import FD_STEP, central_difference
from fcgrad.testing import backward as t
from fcgrad.testing import layer_checks

__tracebackhide__ = True  # pytest shows the user's test and the message, not these frames


def fd_input_gradients(forward, inputs: dict, residual_y: np.ndarray, names, step: float = FD_STEP):
    """(``{name: ∂L/∂name}`` by central differences, Σ|residual_y ⊙ y|) for L = Σ residual_y ⊙ forward(inputs)."""
    arrays = {k: v.copy() for k, v in inputs.items()}

    def value() -> float:
        return float(np.sum(residual_y * np.asarray(forward(**arrays), np.float64)))

    grads = {}
    for name in names:
        a, g = arrays[name], np.empty_like(arrays[name])
        for idx in np.ndindex(*a.shape):
            g[idx] = central_difference(a, idx, value, step)
        grads[name] = g
    magnitude = float(np.sum(np.abs(residual_y * np.asarray(forward(**arrays), np.float64))))
    return grads, magnitude


def assert_backward_matches_fd(
    forward: Callable[..., np.ndarray],
    backward: Callable[..., Mapping[str, np.ndarray]],
    shapes: Mapping[str, tuple[int, ...]],
    *,
    wrt: Mapping[str, str] | None = None,
    seed: int = 0,
    n_trials: int = 1,
    transform=None,
    upstream: str = "residual_y",
    step: float = FD_STEP,
    weights: str = "in,out",
    samples: str = "columns",
):
    """``assert_backward_matches`` against central finite differences of a NumPy ``forward`` (the weaker oracle).

    Arguments:
        forward: ``forward(**inputs) -> y`` in plain NumPy (anything: branches on values, SciPy), float64.
        backward: ``backward(residual_y=..., **inputs) -> {gradient name: array}``, each shaped like its input.
        shapes: input name -> shape, e.g. ``{"x": (3, 5), "w": (3, 2), "b": (2, 1)}``.
        wrt: gradient name -> input name (default: ``x`` -> ``residual_x``, any ``p`` -> ``grad_p``).
        seed: trial ``k`` draws from ``numpy.random.default_rng(seed + k)``.
        n_trials: independent draws (default 1: every entry of every input costs two forward calls).
        transform: input name -> function applied to its N(0, 1) draw.
        upstream: the keyword under which ``backward`` receives ∂L/∂y.
        step: the central difference's step h (default ``FD_STEP``, 1e-6).
        weights, samples: the layout, as for ``assert_backward_matches`` (``"in,out"``/``"out,in"``,
            ``"columns"``/``"rows"``).

    Returns one ``GradientCheck`` per gradient (rtol = FD_REL_TOL, atol = the rounding floor of that trial);
    raises ``AssertionError`` naming every gradient that does not match.

    Example, a forward JAX cannot trace (a Python branch on each value)::

        def forward(x, w, b):
            z = w.T @ x + b
            return np.array([[v if v > 0 else 0.1 * v for v in row] for row in z])

        def backward(residual_y, x, w, b):
            residual_z = residual_y * np.where(w.T @ x + b > 0, 1.0, 0.1)  # (out, N)
            return {"residual_x": w @ residual_z, "grad_w": x @ residual_z.T,
                    "grad_b": residual_z.sum(axis=1, keepdims=True)}

        assert_backward_matches_fd(forward, backward, {"x": (3, 5), "w": (3, 2), "b": (2, 1)})
    """
    view = layout(weights, samples)
    shapes, wrt = t._check_call(shapes, wrt, transform, upstream, n_trials)
    t._check_layout(shapes, view)
    t._check_signature("forward", forward, list(shapes), "")
    t._check_signature("backward", backward, [upstream, *shapes], "; if ∂L/∂y has another name, pass upstream=")
    checks = []
    for trial in range(n_trials):
        rng = np.random.default_rng(seed + trial)
        inputs = t._draw_inputs(shapes, transform or {}, rng)
        y = np.asarray(forward(**{k: v.copy() for k, v in inputs.items()}))
        if y.dtype != np.float64 or y.ndim == 0:
            raise FcgradError(f"forward: expected one float64 array y, got dtype {y.dtype}, shape {y.shape}")
        residual_y = rng.standard_normal(y.shape)
        ref, magnitude = fd_input_gradients(forward, inputs, residual_y, set(wrt.values()), step)
        floor = tol.FD_NOISE_FACTOR * float(np.finfo(np.float64).eps) * max(1.0, magnitude) / step
        out = t._as_mapping(backward(**{upstream: residual_y.copy()}, **{k: v.copy() for k, v in inputs.items()}))
        failures, checks = [], []
        context = None
        for gname, iname in wrt.items():
            check, message = t._compare_one(
                gname, iname, out, ref[iname], shapes[iname], tol.FD_REL_TOL, floor, trial, view
            )
            checks.append(check)
            if message is not None:
                if context is None:
                    context = layer_checks.layer_context(inputs, residual_y, view, {"y": y, "grad_w": ref.get("w")})
                names = layer_checks.names_of(gname, iname, out[gname], ref[iname], context) if gname in out else []
                failures.append(message + "".join(f"\n    {n}" for n in names[:1]))
        if failures:
            raise AssertionError(
                f"backward does not match central finite differences of forward (the weaker oracle: float64, "
                f"h={step:g}, ok within rel {tol.FD_REL_TOL:g} or below the rounding floor {floor:.1e}; trial {trial}, "
                f"seed {seed + trial}{t._layout_words(view)}, inputs {shapes}):\n  " + "\n  ".join(failures)
            )
    return checks
