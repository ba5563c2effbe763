"""One JAX SGD step from each of many parameter sets (the reference step, once per set).

The ``local`` rule feeds manual's own parameters at steps k..k+K−1 here and compares manual's
step k+1 with JAX's one step from manual's step k.

A ReLU is not differentiable at 0: where ``|z|`` is within the rounding of ``wᵀx + b``, the two
sides may take different sides of the kink and differ by that sample's whole contribution. A loss
with a kink (hinge, mean absolute error) does the same at the output: an entry of ``y`` within
rounding of its kink may flip its ``residual_y`` by up to ``LOSS_KINK_JUMP / N``. The
``kink`` bound is an upper bound, per layer, of ``max |Δgrad_w|`` and ``max |Δgrad_b|`` that such
flips can cause: the flipped contributions ``|x|·|∂L/∂a|`` of the ambiguous entries, carried
down through ``|w|`` and ``|σ'|`` to the layers below.

The bound costs about as much as the step itself, and it is exactly 0 wherever nothing can flip:

- a network without a kink (no ReLU, no kinked loss) has a bound of 0 everywhere: it is never computed;
- a large step (``LARGE_STEP_FLOPS``) of a ReLU network without a kinked loss also returns its linear
  parts ``z``, which ``may_flip`` screens on the host against a bound of the rounding radius that needs
  no product (``‖w_:o‖ · max_n ‖a_:n‖`` for ``(|w|ᵀ|a|)_on``). Where no ReLU ``z`` comes within it and
  every ``z`` is finite, the bound is exactly 0; it is computed for the other steps only;
- otherwise it is computed with every step.

Either way a run compiles one step function (and the bound's, the first time a screen fails): a large
step is one compiled call per parameter set, smaller ones are vmapped over a chunk of one fixed length.
"""

from functools import cached_property, partial

import jax
import jax.numpy as jnp
import numpy as np

from fcgrad.manual.losses import LOSSES as MANUAL_LOSSES  # each loss's kink_distance, array-API: it runs under jit
from fcgrad.reference.model import ACTIVATIONS, loss
from fcgrad.reference.precision import as_jax, x64_for
from fcgrad.reference.train import sgd_step, static_trainable

# |z| below KINK_ROUNDING_ULPS · (in + 1) · (layer + 1) · u · (|w|ᵀ|x| + |b|) counts as at the kink: the
# rounding of a K-term dot product is at most about K·u relative to Σ|terms|, and each layer below adds
# its own. 4 makes the region generous (it is a few ulps wide either way; measured flips sit inside 1).
KINK_ROUNDING_ULPS = 4.0
# The most one output entry's ∂L/∂y can jump by when it crosses the loss's kink, times N: mean absolute
# error's sign(y − t) goes from −1 to +1 (2); hinge moves a wrong class by 1 and its true class by up to
# one per wrong class, so out − 1 (taken as the number of outputs, which also covers 2 when out = 2).
LOSS_KINK_JUMP = {"mae": lambda out: 2.0, "hinge": lambda out: float(max(out, 2))}
# may_flip's radius is an upper bound of the exact one (‖w_:o‖·‖a_:n‖ ≥ (|w|ᵀ|a|)_on) times this factor, so
# that the rounding of either (relative in·u at most, below 1e-4 in float32 up to 1024 inputs) and the few ulps
# by which two compilations of the same z may differ can never make the exact radius the larger: a step the
# screen clears has no entry within the exact radius, and its bound is exactly 0.
SCREEN_MARGIN = 2.0
# Activations the screen bounds a layer's input through (sigmoid and tanh below 1, relu and identity below |z|);
# a network with another activation has its bound computed with every step.
SCREENED_ACTIVATIONS = ("sigmoid", "tanh", "relu", "identity")

# A step whose products take at least this many FLOPs (about 0.2 ms or more here) is large: its ReLU kink
# bound is screened for. A smaller one computes it with every step: its screen would fail often (few entries,
# wide float32 radii), and a second compiled function would cost more than the bound itself.
LARGE_STEP_FLOPS = 2e7

NO_BOUND, SCREENED, EVERY_STEP = "none", "screened", "every step"


def step_flops(p) -> int:
    """FLOPs of one step's matrix products: wᵀx, x·δᵀ and w·δ per layer, 2·in·out·N each."""
    return 6 * p.batch * sum(int(np.prod(np.shape(layer["w"]))) for layer in p.params)


def bound_mode(p) -> str:
    """How problem ``p``'s kink bound is had: none (no kink), screened (ReLUs only, a large step) or every step."""
    if "relu" not in p.activations and p.loss not in LOSS_KINK_JUMP:
        return NO_BOUND
    screenable = p.loss not in LOSS_KINK_JUMP and set(p.activations) <= set(SCREENED_ACTIVATIONS)
    return SCREENED if screenable and step_flops(p) >= LARGE_STEP_FLOPS else EVERY_STEP


def _kink_bound(params, x, t, activations, loss_name):
    """Per layer {"w": scalar, "b": scalar}: max change of grad_w, grad_b if kink entries flip."""
    u = jnp.finfo(x.dtype).eps / 2
    xs, zs, radii = [], [], []
    a = x
    for i, (layer, act) in enumerate(zip(params, activations)):
        xs.append(a)
        z = layer["w"].T @ a + layer["b"]
        k = layer["w"].shape[0] + 1
        radii.append(KINK_ROUNDING_ULPS * k * (i + 1) * u * (jnp.abs(layer["w"]).T @ jnp.abs(a) + jnp.abs(layer["b"])))
        zs.append(z)
        a = ACTIVATIONS[act](z)
    taps = {
        "x": [jnp.zeros_like(v) for v in xs],
        "z": [jnp.zeros_like(z) for z in zs],
        "y": jnp.zeros_like(a),
    }
    tap_grads = jax.grad(lambda tp: loss(params, x, t, activations, loss_name, tp))(taps)
    outs = tap_grads["x"][1:] + [tap_grads["y"]]  # ∂L/∂a of each layer's output
    bounds = [None] * len(params)
    # bound on |Δ ∂L/∂a| arriving from above; 0·(a real array), not a constant: XLA on CPU was seen to
    # return uninitialised memory for a batched product with a constant zero operand
    carried = 0.0 * jnp.abs(outs[-1])
    if loss_name in LOSS_KINK_JUMP:  # output entries within rounding of the loss's kink
        # a kink distance combines up to two entries of a column (hinge: y_j − y_class + 1): each carries the
        # last layer's z rounding and its activation's, and the distance its own few roundings
        y_radius = jnp.max(radii[-1] + KINK_ROUNDING_ULPS * u * jnp.abs(a), axis=0, keepdims=True)  # (1, N)
        near = MANUAL_LOSSES[loss_name].kink_distance(a, t) <= 2 * y_radius + KINK_ROUNDING_ULPS * u
        carried = carried + jnp.where(near, LOSS_KINK_JUMP[loss_name](a.shape[0]) / a.shape[1], 0.0)
    for i in reversed(range(len(params))):
        act, z = activations[i], zs[i]
        slope = jnp.abs(jax.vjp(ACTIVATIONS[act], z)[1](jnp.ones_like(z))[0])  # |σ'(z)|
        flips = (jnp.abs(z) <= radii[i]) if act == "relu" else jnp.zeros(z.shape, bool)
        e_z = slope * carried + jnp.where(flips, jnp.abs(outs[i]) + carried, 0.0)  # bound on |Δ residual_z|
        bounds[i] = {"w": jnp.max(jnp.abs(xs[i]) @ e_z.T), "b": jnp.max(jnp.sum(e_z, axis=1))}
        carried = jnp.abs(params[i]["w"]) @ e_z
    return bounds


def _linear_parts(params, x, activations):
    """Each layer's ``z = wᵀa + b`` (out, N): the step's own forward, which XLA computes once for both."""
    zs, a = [], x
    for layer, act in zip(params, activations):
        z = layer["w"].T @ a + layer["b"]
        zs.append(z)
        a = ACTIVATIONS[act](z)
    return zs


def _one(params, x, t, lr, activations, loss_name, trainable, mode):
    value, new = sgd_step(params, x, t, lr, activations, loss_name, trainable)
    if mode == EVERY_STEP:
        return value, new, _kink_bound(params, x, t, activations, loss_name)
    return value, new, _linear_parts(params, x, activations) if mode == SCREENED else None


# A large step's call takes its own parameter set: measured here, that compiles in 0.20–0.27 s where a call
# picking its entry out of the stacked chunk took 0.28–0.31 s, and runs no slower
_step_one = jax.jit(_one, static_argnames=("activations", "loss_name", "trainable", "mode"))
_bound_one = jax.jit(_kink_bound, static_argnames=("activations", "loss_name"))


@partial(jax.jit, static_argnames=("activations", "loss_name", "trainable", "mode"))
def _many_steps(stacked, x, t, lr, activations, loss_name, trainable, mode):
    return jax.vmap(lambda params: _one(params, x, t, lr, activations, loss_name, trainable, mode))(stacked)


def _column_squares(a) -> np.ndarray:
    """Σ_j a_jn² of each column n, per step: (K, in, N) -> (K, N), in one pass without a temporary."""
    return np.einsum("kjn,kjn->kn", a, a).astype(np.float64)


def input_norm(x) -> np.ndarray:
    """(1,): max_n ‖x_:n‖, the largest column norm of the data (in, N), in float64."""
    return np.sqrt(_column_squares(np.asarray(x)[None]).max(axis=1))


def may_flip(stacked, zs, x, activations, dtype, x_norm=None) -> np.ndarray:
    """Per step (K,): whether any ReLU's z may lie within its rounding radius, or any z is not finite.

    False is exact: there the kink bound is 0. ``stacked``: per layer {"w": (K, in, out), "b": (K, out, 1)}
    the parameters stepped from; ``zs``: per layer (K, out, N) their linear parts; ``x``: the data (in, N);
    ``x_norm``: its ``input_norm``, where the caller screens many steps of the same data.
    The radius's ``(|w|ᵀ|a|)_on`` is at most ``‖w_:o‖ · max_n ‖a_:n‖`` (Cauchy–Schwarz), and a layer's input
    ``a`` is bounded through its ``z`` below: ``|relu(z)|, |z| ≤ |z|`` and ``|sigmoid(z)|, |tanh(z)| < 1``.
    Each array is read once or twice, without a product.
    """
    u = float(np.finfo(dtype).eps) / 2
    with np.errstate(over="ignore", invalid="ignore"):  # a diverging run: inf and NaN are results here
        flagged = np.zeros(zs[0].shape[0], bool)
        a_norm = input_norm(x) if x_norm is None else x_norm  # (1,) then (K,): max_n ‖a_:n‖ of the input
        for i, (layer, z, act) in enumerate(zip(stacked, zs, activations)):
            z_squares = _column_squares(z)  # (K, N)
            flagged |= ~np.isfinite(z_squares.sum(axis=1))  # with z, w and b are finite too (0·inf is NaN)
            if act == "relu":
                w, b = layer["w"], layer["b"]
                n_in = w.shape[1]
                w_norm = np.sqrt(np.einsum("kio,kio->ko", w, w).astype(np.float64))  # (K, out): ‖w_:o‖
                radius = KINK_ROUNDING_ULPS * (n_in + 1) * (i + 1) * u * (w_norm * a_norm[:, None] + np.abs(b[..., 0]))
                z_min = np.abs(z).min(axis=2).astype(np.float64)  # (K, out): min_n |z_on|
                flagged |= ~np.all(z_min > SCREEN_MARGIN * radius, axis=1)  # NaN: flagged
            a_norm = np.sqrt(z_squares.max(axis=1)) if act in ("relu", "identity") else np.full(1, np.sqrt(z.shape[1]))
    return flagged


# JAX takes a NumPy array on the CPU in place, without a copy, when its data are aligned to this many bytes:
# measured here, an aligned 784×256 float64 array is taken in under 0.1 ms, another copied in about 1 ms
ALIGN_BYTES = 64
STAGING_BUFFERS = 2  # a chunk's buffer is written again two chunks later (see ``Staging``)


def aligned_empty(shape: tuple, dtype) -> np.ndarray:
    """An uninitialised C-ordered array whose data start on an ALIGN_BYTES boundary (JAX reads it in place)."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    raw = np.empty(nbytes + ALIGN_BYTES, np.uint8)
    start = -raw.ctypes.data % ALIGN_BYTES
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def is_aligned(a: np.ndarray) -> bool:
    """Whether JAX can read ``a`` in place: C-contiguous, its data on an ALIGN_BYTES boundary."""
    return a.flags.c_contiguous and a.ctypes.data % ALIGN_BYTES == 0


class Staging:
    """Host buffers JAX reads in place (``aligned_empty``), one set per chunk, ``sets`` sets used in turn.

    Each buffer is kept and handed out again ``sets`` turns later, so a run in chunks touches new memory
    only in its first turns: a freshly allocated buffer costs a page fault per 4 KiB page when first written,
    measured here as the larger part of copying into it. JAX's results are new arrays, except that a result may
    be the input itself (a frozen layer's parameters): a chunk's set is written again only ``sets`` chunks
    later, when the trajectory has judged everything computed from it (it judges a chunk while JAX computes
    the next one)."""

    def __init__(self, sets: int = STAGING_BUFFERS):
        self._sets = [{} for _ in range(sets)]
        self._at = -1

    def turn(self) -> None:
        self._at = (self._at + 1) % len(self._sets)

    def array(self, key, shape: tuple, dtype) -> np.ndarray:
        buffers = self._sets[self._at]
        a = buffers.get(key)
        if a is None or a.shape != shape or a.dtype != dtype:
            a = buffers[key] = aligned_empty(shape, dtype)
        return a


class OneStep:
    """JAX's loss at each fed parameter set (K,), its parameters after one step, and the kink bounds.

    ``kink`` is worked out when first read (the screen and any bound it calls for): the trajectory reads it
    when it judges the chunk, while JAX computes the next one, instead of keeping JAX waiting for it."""

    def __init__(self, losses, new, kink):
        self.losses, self.new = losses, new
        self._kink = kink  # the bounds, or a call that makes them

    @property
    def kink(self) -> list[dict]:
        if callable(self._kink):
            self._kink = self._kink()
        return self._kink


class StepsFrom:
    """One JAX step from each of up to ``capacity`` parameter sets per call, for one problem.

    The data go to JAX once. A large step (``LARGE_STEP_FLOPS``) is one compiled call per parameter set:
    measured here, that compiles faster than a vmapped chunk and runs 15–25% faster. Smaller steps are
    vmapped over the chunk, at one length (a shorter chunk padded with copies of its last entry), so that
    either way one function is compiled per run. ``bound_steps`` counts the steps whose screen failed.
    """

    def __init__(self, p, capacity: int):
        self.p, self.capacity = p, max(1, int(capacity))
        self.static = dict(activations=tuple(p.activations), loss_name=p.loss)
        self.trainable = static_trainable(p.trainable, len(p.params))
        self.mode = bound_mode(p)
        self.per_step = step_flops(p) >= LARGE_STEP_FLOPS
        with x64_for(p.dtype):
            _, self.x, self.t = as_jax(p.params, p.x, p.t, p.dtype)  # checks the layout, converts the data
        self.dtype = np.dtype(self.x.dtype)
        self.bound_steps = 0
        self._staging = Staging()

    def compile_ahead(self) -> None:
        """Compile the step function the calls will run, from their arguments' shapes and types alone: run in
        another thread while manual's first chunk runs, it leaves the first call nothing to compile."""
        p = self.p
        lead = () if self.per_step else (self.capacity,)  # one parameter set per call, or the chunk's
        shapes = [{key: jax.ShapeDtypeStruct((*lead, *np.shape(v)), self.dtype) for key, v in layer.items()}
                  for layer in p.params]  # fmt: skip
        with x64_for(p.dtype):
            step = _step_one if self.per_step else _many_steps
            step.lower(shapes, self.x, self.t, p.lr, trainable=self.trainable, mode=self.mode, **self.static).compile()

    def __call__(self, stacked, k: int | None = None, meanwhile=None) -> OneStep:
        """For entries 0..k−1 of ``stacked`` (per layer ``{"w": (≥k, in, out), "b": (≥k, out, 1)}``): one step.

        ``meanwhile()``, when given, runs while JAX computes: its work is dispatched and not yet awaited.
        ``new``: per layer the parameters after each step, stacked (k, ...) from a vmapped chunk, a list of k
        arrays from one call per step (each a view of JAX's result)."""
        k = len(next(iter(stacked[0].values()))) if k is None else k
        if not 1 <= k <= self.capacity:
            raise ValueError(f"steps from {k} parameter sets: expected 1 to {self.capacity}")
        chunk = [{key: np.asarray(v[:k], self.dtype) for key, v in layer.items()} for layer in stacked]
        meanwhile = meanwhile or (lambda: None)
        with x64_for(self.p.dtype):
            if self.per_step:
                losses, new, extra, bound = self._steps(chunk, k, meanwhile)
            else:
                losses, new, extra, bound = self._vmapped(self._put(stacked, chunk, k), k, meanwhile)
            new = [{key: v[:k] if isinstance(v, list) else np.asarray(v)[:k] for key, v in layer.items()}
                   for layer in new]  # fmt: skip
            return OneStep(np.asarray(losses)[:k], new, lambda: self._kink(chunk, extra, bound, k))

    def _kink(self, chunk, extra, bound, k: int) -> list[dict]:
        """Per layer {"w": (k,), "b": (k,)}: the kink bounds of a chunk's steps (``chunk``: the parameters they
        started from, read when this runs; ``extra``: each step's z, or its bound, from JAX)."""
        with x64_for(self.p.dtype):
            if self.mode == SCREENED:
                flagged = np.flatnonzero(self._screen(chunk, extra, k))
                self.bound_steps += len(flagged)
                kink = bound(flagged) if len(flagged) else None
            else:
                kink = extra if self.mode == EVERY_STEP else None
            if kink is None:  # nothing can flip: the bound is exactly 0
                return [{"w": np.zeros(k), "b": np.zeros(k)} for _ in self.p.params]
            return [{key: np.asarray(v, np.float64)[:k] for key, v in layer.items()} for layer in kink]

    def _screen(self, chunk, zs, k: int) -> np.ndarray:
        """``may_flip`` of each step: ``zs`` per step (one call per step) or per layer stacked (a vmapped chunk)."""
        p = self.p
        if not self.per_step:
            return may_flip(chunk, [np.asarray(z)[:k] for z in zs], p.x, p.activations, self.dtype)
        # step by step, on views: stacking each step's z first would copy them all; the data's norm once a run
        return np.array([may_flip([{key: v[j:j + 1] for key, v in layer.items()} for layer in chunk],
                                  [np.asarray(z)[None] for z in zs[j]], p.x, p.activations, self.dtype,
                                  self._x_norm)[0]
                         for j in range(k)], bool)  # fmt: skip

    @cached_property
    def _x_norm(self) -> np.ndarray:
        """The data's ``input_norm``: a constant of the run, for every step's screen."""
        return input_norm(self.p.x)

    def _fit(self, v: np.ndarray, k: int, key) -> np.ndarray:
        """Entries 0..k−1 of ``v`` in ``capacity`` entries of a staging buffer: a shorter chunk repeats its last."""
        out = self._staging.array(key, (self.capacity, *v.shape[1:]), self.dtype)
        out[:k] = v[:k]
        out[k:] = v[k - 1]
        return out

    def _put(self, stacked, chunk, k: int):
        """A vmapped chunk as JAX arrays of ``capacity`` entries. Where a caller's array is one JAX reads in place
        (``is_aligned``, of this dtype, with at least ``capacity`` entries: the trajectory's history buffers) and
        no entry is to be padded, its first ``capacity`` entries themselves; else the chunk copied into a staging
        buffer, a shorter one padded."""
        self._staging.turn()

        def put(key, v, part):
            whole = v[:self.capacity] if isinstance(v, np.ndarray) and len(v) >= self.capacity else None
            if whole is not None and whole.dtype == self.dtype and is_aligned(whole) and k == self.capacity:
                return whole
            return self._fit(part, k, key)

        staged = [{key: put((i, key), v, part[key]) for key, v in layer.items()}
                  for i, (layer, part) in enumerate(zip(stacked, chunk))]  # fmt: skip
        return jax.device_put(staged, may_alias=True)

    def _vmapped(self, jstacked, k: int, meanwhile):
        p = self.p
        losses, new, extra = _many_steps(jstacked, self.x, self.t, p.lr, trainable=self.trainable, mode=self.mode,
                                         **self.static)  # fmt: skip
        meanwhile()
        return losses, new, extra, None  # small steps are never screened (bound_mode)

    def _steps(self, chunk, k: int, meanwhile):
        """One call per step, each on its own parameter set, put where it lies: an entry of the trajectory's
        aligned history buffers whose size is a multiple of ALIGN_BYTES is read in place, another copied."""
        p = self.p
        sets = [jax.device_put([{key: v[j] for key, v in layer.items()} for layer in chunk], may_alias=True)
                for j in range(k)]  # fmt: skip
        outs = [_step_one(one, self.x, self.t, p.lr, trainable=self.trainable, mode=self.mode, **self.static)
                for one in sets]  # fmt: skip
        meanwhile()

        def bound(flagged):  # the flagged steps' bounds; the others' are exactly 0
            out = [{"w": np.zeros(k), "b": np.zeros(k)} for _ in p.params]
            for j in flagged:
                for layer, got in zip(out, _bound_one(sets[j], self.x, self.t, **self.static)):
                    layer["w"][j], layer["b"][j] = float(got["w"]), float(got["b"])
            return out

        losses = np.array([np.asarray(o[0]) for o in outs])
        # each step's arrays as they lie (a view of JAX's buffer on the CPU): judged step by step, not stacked
        new = [{key: [np.asarray(o[1][i][key]) for o in outs] for key in layer} for i, layer in enumerate(p.params)]
        if self.mode == EVERY_STEP:
            extra = jax.tree.map(lambda *vs: np.stack([np.asarray(v) for v in vs]), *[o[2] for o in outs])
        else:
            extra = [o[2] for o in outs] if self.mode == SCREENED else None  # per step, each layer's z
        return losses, new, extra, bound


def jax_steps_from(p, stacked) -> OneStep:
    """For each entry j of ``stacked`` (per layer ``{"w": (K, in, out), "b": (K, out, 1)}``): one JAX step."""
    return StepsFrom(p, len(next(iter(stacked[0].values()))))(stacked)
