"""The blog-shaped class API (FC, SquareLoss, Net) against the functional core and JAX."""

import numpy as np

from fcgrad import manual, reference
from fcgrad.engine import tolerances as tol
from fcgrad.engine.problems import and_example, random_problem
from fcgrad.manual.classes import FC, CrossEntropyLoss, Net, SquareLoss

SEED = 3
STEPS = 2_000
# In the one-layer step below lr·grad_w moves w by about 4e-2 and changes w·δz by about 1e-3
# (measured): far above float64 noise (1e-16), so "moved" means more than this.
MOVED = 1e-5


def _max_abs(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


def test_net_on_and_reproduces_manual_train():
    p = and_example()
    net = Net((2, 4, 1), lr=0.1, seed=SEED)
    init = manual.init_params((2, 4, 1), seed=SEED)  # the fan-in scaled init Net uses
    assert all(_max_abs(layer["w"], i["w"]) <= tol.TRAJ_ABS_TOL_F64 for layer, i in zip(net.params, init))
    losses = net.train(p.x, p.t, steps=STEPS)
    traj = manual.train(init, p.x, p.t, lr=0.1, steps=STEPS, record_params=False)
    assert losses.shape == (STEPS,)
    assert _max_abs(losses, traj.losses) <= tol.TRAJ_ABS_TOL_F64
    for i, (layer, final) in enumerate(zip(net.params, traj.final)):
        for key in ("w", "b"):
            assert _max_abs(layer[key], final[key]) <= tol.TRAJ_ABS_TOL_F64, f"layer {i} {key}"


def test_net_with_cross_entropy_matches_jax_training():
    p = random_problem((3, 5, 4), loss="cross-entropy", batch=6, seed=SEED, steps=30)
    net = Net(p.sizes, lr=p.lr, activations=p.activations, loss=CrossEntropyLoss(), seed=SEED)
    init = [{k: v.copy() for k, v in layer.items()} for layer in net.params]
    losses = net.train(p.x, p.t, steps=p.steps)
    r = reference.train(init, p.x, p.t, activations=p.activations, loss=p.loss, lr=p.lr, steps=p.steps)
    assert _max_abs(losses, r["losses"]) <= tol.TRAJ_ABS_TOL_F64
    for layer, final in zip(net.params, r["final"]):
        assert _max_abs(layer["w"], final["w"]) <= tol.TRAJ_ABS_TOL_F64 * max(1.0, np.max(np.abs(final["w"])))


def test_fc_backward_returns_residual_x_with_pre_update_w():
    p = random_problem((4, 3), batch=5, seed=SEED)  # one layer: the loss's residual feeds FC.backward
    w0, b0 = p.params[0]["w"].copy(), p.params[0]["b"].copy()
    fc = FC(4, 3, lr=0.5, w=w0, b=b0)
    loss = SquareLoss()
    loss.forward(fc.forward(p.x), p.t)
    residual_x = fc.backward(loss.backward())
    assert fc.bottomVal.shape == p.x.shape and fc.topVal.shape == p.t.shape  # the blog's cache names
    ref = reference.gradients(p.params, p.x, p.t, activations=("sigmoid",))["layers"][0]
    for name in ("residual_z", "grad_w", "grad_b", "residual_x"):
        a = residual_x if name == "residual_x" else getattr(fc.grads, name)
        assert _max_abs(a, ref[name]) <= tol.GRAD_REL_TOL_F64 * max(1.0, np.max(np.abs(ref[name]))), name
    fc.update()
    assert _max_abs(fc.w, w0) > MOVED  # the step moved w by lr·grad_w ...
    # ... and the residual already sent down is w0·δz, not the updated w·δz
    assert _max_abs(residual_x, w0 @ fc.grads.residual_z) <= tol.GRAD_REL_TOL_F64
    assert _max_abs(residual_x, fc.w @ fc.grads.residual_z) > MOVED
