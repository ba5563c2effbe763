"""Every tolerance of the comparisons, with where its value comes from.

Measured on this project's grid (depth 1-4, widths up to 64, batch 1-32, every
activation and loss, float64): manual and JAX gradients differ by rel ≤ 3e-16
on most rows and ≤ 3e-15 on small bias sums (a few ulps, from different summation orders) and the blog's 10,000-step run
keeps parameters within 2e-15. A wrong term gives rel ≥ 1e-2. The float64
tolerances sit about 1000× above the measured noise and 1e10× below the
smallest error a broken derivation makes.
"""

from typing import NamedTuple

import numpy as np

# float64: manual vs JAX
GRAD_REL_TOL_F64 = 1e-12  # gradients and residuals; measured ≤ 3e-16
TRAJ_ABS_TOL_F64 = 1e-12  # per-step params and loss, scaled by max(1, max|param|); measured 2e-15 over 10,000 steps

# float32: unit roundoff is 6e-8, and a sum of K terms in a different order differs by up to
# about K·u relative in the worst case (√K·u typically); K ≤ 1024 here gives ~6e-5 worst case.
GRAD_REL_TOL_F32 = 1e-4  # measured ≤ 9e-7 on the examples and on 784-256-256-10
# The global rule in float32 (not the default; rule="global"): SGD carries per-step float32 rounding
# forward; the blog's examples stay within 2.3e-6 over 10,000 steps, but ReLU kinks and long cross-entropy
# runs drift to 2e-4 and 3e-2 on correct code, which is why float32 is judged by the local rule below.
TRAJ_ABS_TOL_F32 = 1e-4

# manual vs central finite differences (always float64, h = 1e-6): truncation O(h²) ≈ 1e-12
# plus rounding ε·|L|/h ≈ 1e-10 relative; 1e-6 leaves room for curvature (measured ≤ 7e-8 on the examples).
FD_REL_TOL = 1e-6
# The rounding error of a central difference is absolute, about ε·|L|/h per entry, whatever the
# gradient's size: tiny gradients (∂L/∂X of a 784-input net, 1/N = 1/256 each) cannot reach FD_REL_TOL
# (measured rel 1.4e-5 there, max|Δ| 2e-10). An entry set also passes when max|Δ| is below this
# multiple of ε·max(1, |L|)/h; 10 covers the two loss evaluations and the sums inside them.
FD_NOISE_FACTOR = 10.0


def fd_noise_floor(loss_value: float, step: float) -> float:
    """Absolute error a central difference can have from rounding alone."""
    return FD_NOISE_FACTOR * float(np.finfo(np.float64).eps) * max(1.0, abs(loss_value)) / step


# entries probed per array by the finite-difference check (all of them for smaller arrays)
FD_MAX_ENTRIES = 64


def grad_rel_tol(dtype) -> float:
    return GRAD_REL_TOL_F64 if np.dtype(dtype) == np.float64 else GRAD_REL_TOL_F32


def traj_abs_tol(dtype) -> float:
    return TRAJ_ABS_TOL_F64 if np.dtype(dtype) == np.float64 else TRAJ_ABS_TOL_F32


class TrajectoryLimits(NamedTuple):
    """Per-step bounds of one trajectory rule (see fcgrad.engine.trajectory)."""

    loss: float  # |Δloss| ≤ loss · max(1, |L|)
    param: float  # max|Δp| ≤ param · max(1, max|p|) (+ the update share below)
    update: float  # local: + update · max|p_{k+1} − p_k|; shadow: the factor on JAX32's own distance


# float32 local rule (the float32 default): manual's step k+1 vs ONE JAX step from manual's own step k.
# Both sides then differ by one step's rounding only. Measured over 64 correct float32 runs of 2,000 steps
# (depth 1-4, every activation, both losses, lr 0.1 and 0.9 of 2/sharpness; u = 6e-8 is the unit roundoff):
# |Δloss| ≤ 4u·max(1, |L|) = 2.4e-7, so 1e-5 is 40× above it; max|Δp| ≤ 3.5u·max(1, max|p|) = 2.1e-7
# without kinks, so 1e-6 is 5× above it, plus 1e-3 of the step's own size max|p_{k+1} − p_k| for the
# rounding of lr·grad (gradient sums differ by up to K·u relative). Together the worst correct step used
# 0.12 of the bound (also over tests/float32_grid.json: 98 runs of 10,000 steps up to 0.9 of the edge of
# stability, 0.12 without ReLU). A wrong term changes the step by ≥ 1e-2 of its size, at every step: the
# broken derivations of the suite reach 2.2 to 3,400 times the bound from step 0.
LOCAL_LOSS_TOL_F32 = 1e-5
LOCAL_PARAM_TOL_F32 = 1e-6
LOCAL_UPDATE_TOL_F32 = 1e-3
# ReLU entries within rounding of the kink may fall on either side: one step's own rounding can flip them,
# and a flip moves the step by that sample's whole contribution (measured up to 1.4× the step's size, or
# 17,000 u·max|p| on 8-32-32-4). fcgrad.engine.one_step bounds that change to first order; the bound is
# multiplied by 2 for flips interacting (measured on the 98-run grid: correct ReLU runs used at most 0.50
# of the total bound, i.e. the flips reached the first-order bound itself and never went past it).
KINK_SLACK = 2.0
# float64 networks with a ReLU are judged by the same local rule: through a kink, the global rule's
# accumulated float64 rounding grows the way float32's does (8-32-32-4 relu, N 32, lr 0.1 reached 1.3e-12 at
# step 7420 against the 1e-12 bound: a false alarm). The bounds are float32's moved to float64's unit
# roundoff (1.1e-16) with wider margins: |Δloss| ≤ 1e-13·max(1, |L|), max|Δp| ≤ 1e-14·max(1, max|p|) plus
# 1e-9 of the step's own size, plus the kink bound. Measured over 16 correct float64 ReLU runs of 10,000
# steps (depth 2-5, widths 8-32, N 32, both losses, lr 0.1 and 0.5): the worst step used 0.13 of the bound.
# A wrong term changes a step by ≥ 1e-2 of its size; tests pin a 1e-11 offset at one step as a failure.
LOCAL_LOSS_TOL_F64 = 1e-13
LOCAL_PARAM_TOL_F64 = 1e-14
LOCAL_UPDATE_TOL_F64 = 1e-9
KINK_ACTIVATIONS = ("relu",)  # activations whose derivative jumps: rounding can flip an entry across
KINK_LOSSES = ("hinge", "mae")  # losses whose ∂L/∂y jumps (fcgrad.engine.one_step bounds both kinds)
# float32 shadow rule (measured, not the default): max|manual32 − JAX32| ≤ (SHADOW_FACTOR + 1)·max|JAX32 −
# JAX64| + floor. The two float32 runs drift apart chaotically through kinks and near the edge of stability
# while each stays close to float64 by chance only: with a factor of 10 it raised false alarms on correct
# runs (ratios up to 79, see tests/float32_grid.json); no factor separates them from broken code reliably.
SHADOW_FACTOR = 10.0
SHADOW_FLOOR_F32 = 1e-6


def trajectory_limits(rule: str, dtype, atol: float | None = None) -> TrajectoryLimits:
    """The bounds a rule applies; ``atol`` replaces the absolute parameter (and loss) bound."""
    if rule == "global":
        base = TRAJ_ABS_TOL_F64 if np.dtype(dtype) == np.float64 else TRAJ_ABS_TOL_F32
        limits = TrajectoryLimits(base, base, 0.0)
    elif rule == "local" and np.dtype(dtype) == np.float64:
        limits = TrajectoryLimits(LOCAL_LOSS_TOL_F64, LOCAL_PARAM_TOL_F64, LOCAL_UPDATE_TOL_F64)
    elif rule == "local":
        limits = TrajectoryLimits(LOCAL_LOSS_TOL_F32, LOCAL_PARAM_TOL_F32, LOCAL_UPDATE_TOL_F32)
    else:
        limits = TrajectoryLimits(SHADOW_FLOOR_F32, SHADOW_FLOOR_F32, SHADOW_FACTOR)
    if atol is not None:
        limits = limits._replace(loss=atol, param=atol)
    return limits

def default_rule(dtype, activations=(), loss: str | None = None) -> str:
    """float64 without a kink: the global rule, tight at every step. float32, or a kink (a ReLU, the hinge
    or absolute loss): the local one-step rule, where rounding cannot build up through kinks into a false verdict.
    """
    kinked = any(a in KINK_ACTIVATIONS for a in activations) or loss in KINK_LOSSES
    return "global" if np.dtype(dtype) == np.float64 and not kinked else "local"
