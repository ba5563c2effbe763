"""The blog's published training code, reproduced as a variant of the manual path.

The blog derives backprop correctly, but its code departs from that math in three
places (docs/design.md). Each is one switch of ``BlogDepartures``; all on is the blog's
code, all off is the correct path of ``manual.network`` (the audit checks both ends):

1. ``unnormalized_loss_grad``: the loss's backward returns ``y − t`` without the 1/N its
   forward divides by, so every gradient is N times too large.
2. ``scalar_bias_grad``: ``grad_b`` sums ``residual_z`` over all axes, one scalar that
   lands on every row of ``b`` ``(out, 1)``; right only for a one-output layer.
3. ``residual_after_update``: each layer updates ``w`` and ``b`` inside its backward and
   only then computes ``residual_x = w·residual_z``, with the updated ``w``.

Like the blog's code, a step trains every ``w`` and ``b`` (``trainable`` can freeze
some). Layout as everywhere: ``x`` (in, N), ``w`` (in, out), ``b`` (out, 1). NumPy only.
"""

from collections.abc import Iterable
from dataclasses import dataclass, fields

import numpy as np

from fcgrad.manual import validate
from fcgrad.manual.errors import FcgradError
from fcgrad.manual.layer import LayerGrads, fc_backward
from fcgrad.manual.losses import LOSSES
from fcgrad.manual.network import Gradients, LayerCache, Params, Trajectory, forward, run_steps

DEPARTURES = ("unnormalized_loss_grad", "scalar_bias_grad", "residual_after_update")


@dataclass(frozen=True)
class BlogDepartures:
    """Which of the blog code's three departures are on; the default (all on) is the blog's code."""

    unnormalized_loss_grad: bool = True
    scalar_bias_grad: bool = True
    residual_after_update: bool = True

    @classmethod
    def none(cls) -> "BlogDepartures":
        """The correct path: the same as ``manual.network.train``."""
        return cls(False, False, False)

    @classmethod
    def only(cls, name: str) -> "BlogDepartures":
        """Exactly one departure on."""
        return cls.from_names([name])

    @classmethod
    def from_names(cls, names: str | Iterable[str]) -> "BlogDepartures":
        """``"all"``, ``"none"``, or names of ``DEPARTURES`` (a list or one comma-separated string)."""
        if isinstance(names, str):
            if names.strip() == "all":
                return cls()
            if names.strip() == "none":
                return cls.none()
            names = [n.strip() for n in names.split(",") if n.strip()]
        names = list(names)
        unknown = [n for n in names if n not in DEPARTURES]
        if unknown or not names:
            got = ", ".join(map(repr, unknown)) if unknown else "nothing"
            raise FcgradError(
                f"departures: expected a comma-separated list of {', '.join(DEPARTURES)} (or 'all' or 'none'), "
                f"got {got}"
            )
        return cls(**{d: d in names for d in DEPARTURES})

    @property
    def on(self) -> tuple[str, ...]:
        """The names of the departures switched on, in ``DEPARTURES`` order."""
        return tuple(f.name for f in fields(self) if getattr(self, f.name))


def blog_loss_backward(y: np.ndarray, t: np.ndarray, loss: str, departures: BlogDepartures) -> np.ndarray:
    """``residual_y`` ``(out, N)`` as the blog computes it."""
    if not departures.unnormalized_loss_grad:
        return LOSSES[loss].backward(y, t)  # (out, N), with the forward's 1/N
    if loss == "square":
        return y - t  # (out, N): the blog's SquareLoss.backward, without the 1/N
    return LOSSES[loss].backward(y, t) * y.shape[1]  # (out, N): the same departure on another loss, N·∂L/∂y


def blog_fc_backward(
    residual_y: np.ndarray,
    layer: dict[str, np.ndarray],
    cache: LayerCache,
    activation: str,
    lr: float,
    departures: BlogDepartures,
    trainable: dict[str, bool] | None = None,
) -> tuple[LayerGrads, dict[str, np.ndarray]]:
    """One layer's backward in the blog's order: gradients, then the update, then the residual sent down.

    ``residual_y`` (out, N) -> (LayerGrads(residual_z (out, N), grad_w (in, out), grad_b (out, 1),
    residual_x (in, N)), the layer's updated ``{"w", "b"}``).
    """
    w, b = layer["w"], layer["b"]
    train = trainable or {"w": True, "b": True}
    g = fc_backward(residual_y, w, cache.fc, activation)  # correct residual_z, grad_w, grad_b, pre-update residual_x
    residual_z = g.residual_z  # (out, N) ⊙ f'(z) -> (out, N)
    grad_w = g.grad_w  # (in, N)·(N, out) -> (in, out)
    if departures.scalar_bias_grad:
        grad_b = np.full_like(b, np.sum(residual_z))  # Σ over all of (out, N) -> one scalar on every row of (out, 1)
    else:
        grad_b = g.grad_b  # Σ over the N columns -> (out, 1)
    new_w = w - lr * grad_w if train["w"] else w  # (in, out), updated inside the backward as the blog does
    new_b = b - lr * grad_b if train["b"] else b  # (out, 1)
    if departures.residual_after_update:
        residual_x = new_w @ residual_z  # (in, out)·(out, N) -> (in, N), with the UPDATED w
    else:
        residual_x = g.residual_x  # (in, out)·(out, N) -> (in, N), pre-update w
    return LayerGrads(residual_z, grad_w, grad_b, residual_x), {"w": new_w, "b": new_b}


def blog_step(
    params: Params, x, t, activations, loss: str, lr: float, departures: BlogDepartures, trainable
) -> tuple[Gradients, Params]:
    """Unchecked: one full-batch step of the blog's code -> (what it computed, the updated parameters).

    ``Gradients.loss`` is the loss at ``params`` (before the step); the layers run from the top down,
    each updating itself before sending its residual to the layer below.
    """
    y, caches = forward(params, x, activations)
    value = float(LOSSES[loss].forward(y, t))
    residual_y = blog_loss_backward(y, t, loss, departures)  # (out, N)
    grads, new = [], []
    residual = residual_y
    for layer, cache, act, train in zip(reversed(params), reversed(caches), reversed(activations), reversed(trainable)):
        g, updated = blog_fc_backward(residual, layer, cache, act, lr, departures, train)
        grads.append(g)
        new.append(updated)
        residual = g.residual_x  # (in, N) of this layer is the (out, N) of the one below
    return Gradients(value, y, residual_y, grads[::-1]), new[::-1]


def _checked(params, x, t, activations, loss, lr, departures, trainable, dtype):
    if not isinstance(departures, BlogDepartures):
        raise FcgradError(f"departures: expected a BlogDepartures, got {type(departures).__name__}")
    params, dt = validate.check_params(params, dtype)
    x, t = validate.check_data(x, t, params, dt)
    activations = validate.check_activations(activations, len(params))
    loss = validate.check_loss(loss)
    lr = validate.check_lr(lr)
    trainable = validate.check_trainable(trainable, len(params))
    return params, x, t, activations, loss, lr, trainable, dt


def blog_gradients(
    params: Params,
    x,
    t,
    *,
    activations="sigmoid",
    loss: str = "square",
    lr: float = 0.1,
    departures: BlogDepartures | None = None,
    trainable=None,
    dtype=None,
) -> Gradients:
    """Every layer's residual_z, grad_w, grad_b, residual_x (and residual_y) as the blog's code computes them.

    Measured inside one step at ``params``: with ``residual_after_update`` the residual a layer
    sends down depends on its update, hence ``lr``. Nothing is returned updated.
    """
    departures = BlogDepartures() if departures is None else departures
    params, x, t, activations, loss, lr, trainable, _ = _checked(
        params, x, t, activations, loss, lr, departures, trainable, dtype
    )
    return blog_step(params, x, t, activations, loss, lr, departures, trainable)[0]


def blog_train(
    params: Params,
    x,
    t,
    *,
    activations="sigmoid",
    loss: str = "square",
    lr: float = 0.1,
    steps: int = 10_000,
    departures: BlogDepartures | None = None,
    trainable=None,
    record_params: bool = True,
    dtype=None,
) -> Trajectory:
    """Full-batch training as the blog's code runs it; the same contract as ``manual.train``.

    Raises ``DivergenceError`` naming the first step whose loss is not finite.
    """
    departures = BlogDepartures() if departures is None else departures
    params, x, t, activations, loss, lr, trainable, dt = _checked(
        params, x, t, activations, loss, lr, departures, trainable, dtype
    )
    steps = validate.check_steps(steps)

    def step(p: Params) -> tuple[float, Params]:
        g, new = blog_step(p, x, t, activations, loss, lr, departures, trainable)
        return g.loss, new

    return run_steps(step, params, steps, record_params=record_params, dtype=dt, lr=lr, what="the blog-code variant")
