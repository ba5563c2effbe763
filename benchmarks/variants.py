"""The variants: each builds a ``Variant`` whose ``run(k)`` does k calls and returns once they are done.

NumPy variants run on the host CPU. JAX variants are compiled ahead of time
(``jit(...).lower(...).compile()``, timed as ``compile_s``) for one device with their
data already there, and ``run`` ends with ``block_until_ready``. Call every builder of
a dtype inside ``reference.x64_for(dtype)``; JAX float32 builders take a matmul
``precision`` ("default": JAX's default, TF32 on NVIDIA GPUs; "highest": full float32).

Every variant starts from the workload's initial parameters and keeps training from
where its previous call stopped, as a training loop does.
"""

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from fcgrad import reference
from fcgrad.benchmarks import flops
from fcgrad.benchmarks.minimal import minimal_jax_train, minimal_numpy_step
from fcgrad.benchmarks.workloads import Workload
from fcgrad.manual import network

FLOOR_DATA_SEED = 1  # random operands of the floor's products (never zeros: see METHOD)
FUSED_UNROLL = 1  # lax.scan unroll of jit-fused; 2, 4, 8 and 16 were no faster at 2-4-1 on CPU (README)


@dataclass
class Variant:
    name: str  # manual, minimal-numpy, jit-step, jit-fused, manual-jit, minimal-jax, floor, floor-needed
    backend: str  # "numpy" or "jax"
    device: str  # "cpu" or "gpu": where the arithmetic runs
    precision: str | None  # JAX float32 matmul precision, else None
    products: str  # flops.ALL or flops.NEEDED: which matrix products one step computes
    steps_per_call: int
    compile_s: float | None  # trace + lower + compile; None for NumPy
    run: Callable[[int], None]  # k calls, finished on return


def _all_trainable(wl: Workload) -> list[dict]:
    return [{"w": True, "b": True}] * len(wl.params)


# ---- NumPy ---------------------------------------------------------------------------------


def manual_variant(wl: Workload) -> Variant:
    """``manual``: the step of ``manual.train`` (``network.train_step``: in place, into buffers made once),
    the loss checked for finiteness every step as manual.train does."""
    trainable = _all_trainable(wl)
    params = [{k: v.copy() for k, v in p.items()} for p in wl.params]
    works, residual_y = network.train_works(params, wl.batch)
    args = (wl.x, wl.t, network.blog_spec(params, wl.activations), wl.loss, wl.lr, trainable, works, residual_y)

    def run(k: int) -> None:
        for _ in range(k):
            if not math.isfinite(network.train_step(params, *args)):
                raise FloatingPointError("manual: the loss is not finite")

    return Variant("manual", "numpy", "cpu", None, flops.NEEDED, 1, None, run)


def minimal_numpy_variant(wl: Workload) -> Variant:
    """``minimal-numpy``: ``minimal.minimal_numpy_step``, the blog's arithmetic in the fewest NumPy calls."""
    if set(wl.activations) != {"sigmoid"} or wl.loss != "square":
        raise ValueError("minimal-numpy implements sigmoid layers and the square loss only")
    ws = [p["w"].copy() for p in wl.params]
    bs = [p["b"].copy() for p in wl.params]

    def run(k: int) -> None:
        for _ in range(k):
            if not math.isfinite(minimal_numpy_step(ws, bs, wl.x, wl.t, wl.lr)):
                raise FloatingPointError("minimal-numpy: the loss is not finite")

    return Variant("minimal-numpy", "numpy", "cpu", None, flops.NEEDED, 1, None, run)


def floor_operands(wl: Workload) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per layer (w (in, out), x (in, N), δ (out, N)) with the shapes and dtype of one step."""
    rng = np.random.default_rng(FLOOR_DATA_SEED)
    dt = np.dtype(wl.dtype)
    ops = []
    for i, p in enumerate(wl.params):
        n_in, n_out = p["w"].shape
        x = wl.x if i == 0 else rng.uniform(0, 1, (n_in, wl.batch)).astype(dt)
        delta = (rng.standard_normal((n_out, wl.batch)) / wl.batch).astype(dt)
        ops.append((p["w"], x, delta))
    return ops


def numpy_floor(ops, products: str = flops.ALL) -> Variant:
    """``floor`` (or ``floor-needed``) of ``floor_operands``: the step's products alone, into preallocated outputs."""
    outs = [
        (np.empty((w.shape[1], x.shape[1]), w.dtype), np.empty(w.shape, w.dtype), np.empty(x.shape, w.dtype))
        for w, x, _ in ops
    ]
    skip_first_residual_x = products == flops.NEEDED

    def run(k: int) -> None:
        for _ in range(k):
            for i, ((w, x, d), (z, gw, rx)) in enumerate(zip(ops, outs)):
                np.matmul(w.T, x, out=z)  # (out, in)·(in, N)
                np.matmul(x, d.T, out=gw)  # (in, N)·(N, out)
                if i or not skip_first_residual_x:
                    np.matmul(w, d, out=rx)  # (in, out)·(out, N)

    name = "floor-needed" if skip_first_residual_x else "floor"
    return Variant(name, "numpy", "cpu", None, products, 1, None, run)


# ---- JAX -----------------------------------------------------------------------------------


def jax_device(platform: str):
    return jax.devices(platform)[0]


def _precision_context(precision: str | None):
    return jax.default_matmul_precision("highest") if precision == "highest" else contextlib.nullcontext()


def _on_device(wl: Workload, device):
    params, x, t = reference.as_jax(wl.params, wl.x, wl.t, wl.dtype)
    lr = jnp.asarray(wl.lr, dtype=x.dtype)
    params, x, t, lr = jax.device_put((params, x, t, lr), device)
    return jax.block_until_ready((params, x, t, lr))


def _compile(jitted, args, kwargs, precision):
    start = time.perf_counter()
    with _precision_context(precision):
        compiled = jitted.lower(*args, **kwargs).compile()
    return compiled, time.perf_counter() - start


def _training_run(compiled, params, x, t, lr, pick_params) -> Callable[[int], None]:
    state = [params]

    def run(k: int) -> None:
        p = state[0]
        for _ in range(k):
            p = pick_params(compiled(p, x, t, lr))
        state[0] = jax.block_until_ready(p)

    return run


def jit_step_variant(wl: Workload, device, precision=None) -> Variant:
    """``jit-step``: ``reference.jit_step``, one compiled SGD step per Python call."""
    params, x, t, lr = _on_device(wl, device)
    static = {
        "activations": wl.activations,
        "loss_name": wl.loss,
        "trainable": reference.static_trainable(None, len(params)),
    }
    compiled, secs = _compile(reference.jit_step, (params, x, t, lr), static, precision)
    run = _training_run(compiled, params, x, t, lr, lambda out: out[1])
    return Variant("jit-step", "jax", device.platform, precision, flops.NEEDED, 1, secs, run)


@partial(jax.jit, static_argnames=("activations", "loss_name", "trainable", "steps", "unroll"))
def fused_train(params, x, t, lr, *, activations, loss_name, trainable, steps: int, unroll: int):
    """``steps`` of ``reference.sgd_step`` in one ``lax.scan``, nothing recorded -> the final parameters.

    ``reference.scan_train`` also returns every step's loss, which a training run needs
    and a timing does not; unused here, XLA drops the loss's reduction too.
    """

    def body(p, _):
        return reference.sgd_step(p, x, t, lr, activations, loss_name, trainable)[1], None

    return jax.lax.scan(body, params, None, length=steps, unroll=unroll)[0]


def jit_fused_variant(wl: Workload, device, precision=None, *, steps: int, unroll: int = FUSED_UNROLL) -> Variant:
    """``jit-fused``: ``fused_train``, ``steps`` SGD steps of the reference model in one compiled call."""
    params, x, t, lr = _on_device(wl, device)
    static = {
        "activations": wl.activations,
        "loss_name": wl.loss,
        "trainable": reference.static_trainable(None, len(params)),
        "steps": steps,
        "unroll": unroll,
    }
    compiled, secs = _compile(fused_train, (params, x, t, lr), static, precision)
    run = _training_run(compiled, params, x, t, lr, lambda out: out)
    return Variant("jit-fused", "jax", device.platform, precision, flops.NEEDED, steps, secs, run)


def minimal_jax_variant(wl: Workload, device, precision=None, *, steps: int) -> Variant:
    """``minimal-jax``: ``minimal.minimal_jax_train``, a bare fori_loop over jax.grad, ``steps`` per call."""
    if set(wl.activations) != {"sigmoid"} or wl.loss != "square":
        raise ValueError("minimal-jax implements sigmoid layers and the square loss only")
    params, x, t, lr = _on_device(wl, device)
    pairs = [(p["w"], p["b"]) for p in params]
    compiled, secs = _compile(minimal_jax_train, (pairs, x, t, lr), {"steps": steps}, precision)
    run = _training_run(compiled, pairs, x, t, lr, lambda out: out)
    return Variant("minimal-jax", "jax", device.platform, precision, flops.NEEDED, steps, secs, run)


def manual_formulas_step(params, x, t, lr, *, activations, loss, trainable):
    """The hand-derived step of ``manual`` on whatever arrays it gets: (loss, new params)."""
    g = network.loss_and_gradients(params, x, t, activations, loss)
    return g.loss, network.sgd_update(params, g.layers, lr, trainable)


def manual_jit(wl: Workload):
    """``jax.jit`` of the manual formulas for ``wl``'s network: f(params, x, t, lr) -> (loss, new params)."""
    step = partial(manual_formulas_step, activations=wl.activations, loss=wl.loss, trainable=_all_trainable(wl))
    return jax.jit(step)


def manual_jit_variant(wl: Workload, device, precision=None) -> Variant:
    """``manual-jit``: manual's own formulas (array-API code) compiled by jax.jit, one step per call."""
    params, x, t, lr = _on_device(wl, device)
    compiled, secs = _compile(manual_jit(wl), (params, x, t, lr), {}, precision)
    run = _training_run(compiled, params, x, t, lr, lambda out: out[1])
    return Variant("manual-jit", "jax", device.platform, precision, flops.NEEDED, 1, secs, run)


def _products(ops, skip_first_residual_x: bool):
    out = []
    for i, (w, x, d) in enumerate(ops):
        out.append(w.T @ x)  # (out, in)·(in, N)
        out.append(x @ d.T)  # (in, N)·(N, out)
        if i or not skip_first_residual_x:
            out.append(w @ d)  # (in, out)·(out, N)
    return out


def jax_floor(ops, device, precision=None, products: str = flops.ALL) -> Variant:
    """``floor`` (or ``floor-needed``) of ``floor_operands`` on JAX: the step's products alone, one jitted call."""
    skip = products == flops.NEEDED
    ops = jax.block_until_ready(jax.device_put([tuple(jnp.asarray(a) for a in op) for op in ops], device))
    compiled, secs = _compile(jax.jit(partial(_products, skip_first_residual_x=skip)), (ops,), {}, precision)

    def run(k: int) -> None:
        out = None
        for _ in range(k):
            out = compiled(ops)
        jax.block_until_ready(out)

    name = "floor-needed" if skip else "floor"
    return Variant(name, "jax", device.platform, precision, products, 1, secs, run)
