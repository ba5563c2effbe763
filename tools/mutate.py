"""The checking code's own mutation test: plant a realistic mistake, run the tests that guard it, expect a failure.

Each mutation replaces one exact snippet of one file (it must occur there exactly once) in a COPY of the
repository, never in the working tree: the tracked and untracked-but-not-ignored files are copied to a
temporary folder, a virtual environment there installs that copy in editable mode (NumPy, JAX, pytest
and the rest come from the environment running this tool), and for each mutation the tests named with it
run in the copy with ``-p no:cacheprovider -x -q``. A mutation is *killed* when a test fails, and
*survives* when they all pass; every one must be killed. Before the mutations, the same tests run once on
the unmutated copy and must pass, so that a kill means the mistake, not a broken test.

    python tools/mutate.py                   # every mutation; the table on stdout
    python tools/mutate.py --only M01,T03    # some of them
    python tools/mutate.py --list            # the list, nothing run
    python tools/mutate.py --check           # every snippet still found exactly once, nothing run
    python tools/mutate.py --report docs/mutation.md   # and the table written into docs/mutation.md

Add a mutation whenever a rule, a tolerance or a catalogue entry is added: one line of ``MUTATIONS``.
Not part of the default suite (it runs the suite's files dozens of times: several minutes).
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
MUTATION_TIMEOUT_S = 900  # the targeted tests of one mutation; the slowest set takes about a minute here


class Mutation(NamedTuple):
    id: str
    path: str  # relative to the repository's root
    old: str  # the exact snippet, found exactly once
    new: str
    tests: tuple[str, ...]  # test files or node ids that must catch it
    what: str  # the mistake in words


def m(id_, path, old, new, tests, what):
    return Mutation(id_, path, old, new, tuple(tests.split()), what)


MUTATIONS = [
    # ---- manual/: the hand derivation itself ------------------------------------------------------------------
    m(
        "M01",
        "manual/layer.py",
        "grad_w = x @ residual_z.T  #",
        "grad_w = -(x @ residual_z.T)  #",
        "tests/test_gradients.py::test_every_quantity_matches_jax",
        "grad_w with a flipped sign (comparison path)",
    ),
    m(
        "M02",
        "manual/layer.py",
        "residual_x = w @ residual_z  #",
        "residual_x = w.T @ residual_z  #",
        "tests/test_gradients.py::test_every_quantity_matches_jax",
        "residual_x through wᵀ (a transpose too many)",
    ),
    m(
        "M03",
        "manual/layer.py",
        "grad_b = namespace(residual_z).sum(residual_z, axis=1, keepdims=True)",
        "grad_b = namespace(residual_z).sum(residual_z) + 0 * residual_z[:, :1]",
        "tests/test_gradients.py::test_every_quantity_matches_jax",
        "grad_b summed over every axis (the blog's code's departure)",
    ),
    m(
        "M04",
        "manual/losses.py",
        "return (y - t) / n  # (out, N): the 1/N",
        "return (y - t)  # (out, N): the 1/N",
        "tests/test_gradients.py::test_every_quantity_matches_jax",
        "the square loss's backward without its 1/N",
    ),
    m(
        "M05",
        "manual/network.py",
        "np.divide(out, n, out=out)  # residual_y = (y − t) / N",
        "np.divide(out, 1, out=out)  # residual_y = (y − t) / N",
        "tests/test_trajectories.py::test_short_run_agrees_with_jax_at_every_step",
        "the training path's residual_y without its 1/N (gradients right, training wrong)",
    ),
    m(
        "M06",
        "manual/layer.py",
        "grad_w = np.matmul(x, residual_z.T, out=work.grad_w)",
        "grad_w = np.matmul(x, -residual_z.T, out=work.grad_w)",
        "tests/test_trajectories.py::test_short_run_agrees_with_jax_at_every_step",
        "the training path's grad_w with a flipped sign",
    ),
    m(
        "M07",
        "manual/layer.py",
        "residual_x = np.matmul(w, residual_z, out=work.residual_x)",
        "residual_x = np.matmul(w, residual_z * 0.5, out=work.residual_x)",
        "tests/test_trajectories.py::test_short_run_agrees_with_jax_at_every_step",
        "the training path's residual_x halved",
    ),
    m(
        "M08",
        "manual/activations.py",
        "lambda residual_y, z, y: residual_y * y * (1 - y),  # σ' = y(1 − y)",
        "lambda residual_y, z, y: residual_y * y,  # σ' = y(1 − y)",
        "tests/test_gradients.py::test_every_quantity_matches_jax",
        "σ' written as y",
    ),
    m(
        "M09",
        "manual/activations.py",
        "np.subtract(1.0, out, out=out)  # tanh' = 1 − y²",
        "np.subtract(1.0, y, out=out)  # tanh' = 1 − y²",
        "tests/test_trajectories.py::test_short_run_agrees_with_jax_at_every_step "
        "tests/test_fast_path.py::test_each_in_place_activation_form_equals_its_formula",
        "the training path's tanh' written as 1 − y",
    ),
    m(
        "M10",
        "manual/losses.py",
        "return (p * xp.sum(t, axis=0, keepdims=True) - t) / n",
        "return (p - t) / n",
        "tests/test_losses.py::test_cross_entropy_residual_y_holds_the_sum_of_each_target_column",
        "cross-entropy's backward assuming every target column sums to 1",
    ),
    m(
        "M11",
        "manual/losses.py",
        "return (active - t * xp.sum(active, axis=0, keepdims=True)) / n  # (out, N)",
        "return (active - t) / n  # (out, N)",
        "tests/test_losses.py::test_loss_value_and_residual_y_match_jax "
        "tests/test_gradients.py::test_every_quantity_matches_jax",
        "the hinge backward's true class gets −1 instead of −(active margins)",
    ),
    m(
        "M12",
        "manual/finite_diff.py",
        "return (up - down) / (2 * step)",
        "return (up - down) / step",
        "tests/test_gradients.py::test_manual_matches_finite_differences",
        "central differences without the 2 of 2h",
    ),
    m(
        "M13",
        "manual/network.py",
        'p["w"] -= lr * g.grad_w  # (in, out)',
        'p["w"] += lr * g.grad_w  # (in, out)',
        "tests/test_trajectories.py::test_short_run_agrees_with_jax_at_every_step",
        "gradient ascent: w ← w + lr·grad_w on the training path",
    ),
    m(
        "M14",
        "manual/batchnorm.py",
        "residual_x = inv_std * (r - r_mean - x_hat * rx_mean)",
        "residual_x = inv_std * (r - r_mean)",
        "tests/test_normalization.py::test_batchnorm_backward_matches_jax",
        "batch norm's backward without the path through σ²",
    ),
    m(
        "M15",
        "manual/losses.py",
        "return namespace(y).sign(y - t) / y.shape[1]  # (out, N)",
        "return namespace(y).sign(y - t)  # (out, N)",
        "tests/test_losses.py::test_loss_value_and_residual_y_match_jax "
        "tests/test_gradients.py::test_every_quantity_matches_jax",
        "the absolute loss's backward without its 1/N",
    ),
    # ---- manual/optimizers.py ----------------------------------------------------------------------------------
    m(
        "O01",
        "manual/optimizers.py",
        "(1 / np.sqrt(v + eps)) * g, grads, nu)",
        "(1 / (np.sqrt(v) + eps)) * g, grads, nu)",
        "tests/test_optimizers.py::test_update_rule_with_defaults_matches_optax_when_fed_the_same_gradients",
        "RMSProp's eps outside the root (optax puts it inside)",
    ),
    m(
        "O02",
        "manual/optimizers.py",
        'nu = _map(lambda g, v: (1 - decay) * g**2 + decay * v, grads, state["nu"])',
        'nu = _map(lambda g, v: decay * g**2 + (1 - decay) * v, grads, state["nu"])',
        "tests/test_optimizers.py::test_update_rule_with_defaults_matches_optax_when_fed_the_same_gradients",
        "RMSProp's decay on the wrong term",
    ),
    m(
        "O03",
        "manual/optimizers.py",
        "c1, c2 = 1 - b1**count, 1 - b2**count",
        "c1, c2 = 1 - b1**count, 1 - b1**count",
        "tests/test_optimizers.py::test_update_rule_with_defaults_matches_optax_when_fed_the_same_gradients",
        "Adam's second-moment correction with b1",
    ),
    m(
        "O04",
        "manual/optimizers.py",
        'return _map(lambda g, m: g + mu * m, grads, trace), {"trace": trace}',
        'return trace, {"trace": trace}',
        "tests/test_optimizers.py::test_update_rule_with_defaults_matches_optax_when_fed_the_same_gradients",
        "Nesterov without its look-ahead (plain momentum)",
    ),
    m(
        "O05",
        "manual/optimizers.py",
        'trace = _map(lambda g, m: g + mu * m, grads, state["trace"])',
        'trace = _map(lambda g, m: (1 - mu) * g + mu * m, grads, state["trace"])',
        "tests/test_optimizers.py::test_update_rule_with_defaults_matches_optax_when_fed_the_same_gradients",
        "momentum as an average (1 − μ)·g + μ·m where optax sums g + μ·m",
    ),
    m(
        "O06",
        "manual/optimizers.py",
        "direction = _map(lambda d, p: d + wd * p, direction, params)",
        "direction = _map(lambda d, p: d - wd * p, direction, params)",
        "tests/test_optimizers.py::test_update_rule_with_defaults_matches_optax_when_fed_the_same_gradients",
        "AdamW's weight decay with a flipped sign",
    ),
    # ---- the shards -------------------------------------------------------------------------------------------
    m(
        "S01",
        "manual/sharded.py",
        "return n_shard / n_total",
        "return 1 / n_shards",
        "tests/test_sharded.py::test_manual_shards_with_global_n_equal_one_device",
        "a mean of per-shard means",
    ),
    m(
        "S02",
        "manual/sharded.py",
        "for r in range(n - 1):  # reduce-scatter",
        "for r in range(n - 2):  # reduce-scatter",
        "tests/test_sharded.py::test_ring_all_reduce_gives_every_device_the_same_sum",
        "the ring all-reduce one round short",
    ),
    m(
        "S03",
        "manual/sharded.py",
        "loss, masks, weight=weight)  # mean × n_k/N",
        "loss, masks, weight=1.0)  # mean × n_k/N",
        "tests/test_sharded.py::test_manual_shards_with_global_n_equal_one_device",
        "each shard's residual_y not weighted n_k/N",
    ),
    m(
        "S04",
        "reference/sharded.py",
        "return jnp.sum(per_column * weights[0]) / n_total",
        "return jnp.sum(per_column) / n_total",
        "tests/test_sharded.py::test_sharded_jax_gradients_over_uneven_shards",
        "JAX's padded columns not weighted out",
    ),
    m(
        "S05",
        "reference/sharded.py",
        "grads = jax.lax.psum(grads, AXIS)  # the all-reduce",
        "grads = grads  # the all-reduce",
        "tests/test_sharded.py::test_shard_map_gradient_of_replicated_params",
        "shard_map's explicit form without its psum",
    ),
    m(
        "S06",
        "fcgrad/engine/sharded.py",
        "MEAN_OF_MEANS: combine([1 / n] * n),",
        "MEAN_OF_MEANS: combine(right),",
        "tests/test_sharded.py::test_mean_of_per_shard_means_is_named_with_uneven_shards",
        "the mean-of-means hypothesis predicted as the right sum",
    ),
    m(
        "S07",
        "fcgrad/engine/sharded.py",
        "DOUBLE_ALL_REDUCE: combine([n * w for w in right]),",
        "DOUBLE_ALL_REDUCE: combine([2 * w for w in right]),",
        "tests/test_sharded.py::test_double_all_reduce_in_shard_map_is_named",
        "a double all-reduce predicted as 2× instead of S×",
    ),
    # ---- the engine: comparisons and rules -------------------------------------------------------------------
    m(
        "E01",
        "fcgrad/engine/compare.py",
        "rel = float(np.linalg.norm(diff) / max(np.linalg.norm(r),",
        "rel = float(np.linalg.norm(diff) / max(np.linalg.norm(a),",
        "tests/test_audit.py::test_the_missing_1_over_n_makes_residual_y_n_times_too_large",
        "rel measured against manual's norm instead of JAX's",
    ),
    m(
        "E02",
        "fcgrad/engine/compare.py",
        "bool(rel <= tol)",
        "bool(not rel > tol)",
        "tests/test_checker.py::test_nan_or_inf_never_passes_a_gradient_row",
        "a NaN relative error passes a gradient row",
    ),
    m(
        "E03",
        "fcgrad/engine/trajectory.py",
        "bad = ~(d <= limit)",
        "bad = d > limit",
        "tests/test_checker.py::test_nan_in_a_manual_parameter_fails_the_trajectory",
        "a NaN step passes a trajectory row",
    ),
    m(
        "E04",
        "fcgrad/engine/trajectory.py",
        "            r_losses, r_new = self.jax(steps, meanwhile)\n",
        "            with x64_for(p.dtype):  # the mistake: JAX restarted from manual's parameters at each chunk\n"
        "                self.jax.params = as_jax([{kk: v[0] for kk, v in layer.items()} for layer in m.params],"
        " p.x, p.t, p.dtype)[0]\n            r_losses, r_new = self.jax(steps, meanwhile)\n",
        "tests/test_checker.py::test_the_global_rule_carries_drift_across_chunk_boundaries",
        "the global rule's JAX side restarted from manual's parameters at each chunk",
    ),
    m(
        "E05",
        "fcgrad/engine/trajectory.py",
        " + tol.KINK_SLACK * p.lr * kink[i][key][:k]",
        "",
        "tests/test_kinks.py::test_the_local_rule_allows_what_a_flip_at_a_relu_kink_can_change",
        "the local rule without the bound on entries at a ReLU kink",
    ),
    m(
        "E06",
        "fcgrad/engine/trajectory.py",
        "t = t + lim.update * _step_max(b, prev)",
        "t = t + 0.0 * _step_max(b, prev)",
        "tests/test_tolerances_pinned.py::test_local_rule_share_of_the_step",
        "the local rule without its share of the step's size",
    ),
    m(
        "E07",
        "fcgrad/engine/tolerances.py",
        'return "global" if np.dtype(dtype) == np.float64 and not kinked else "local"',
        'return "global" if np.dtype(dtype) == np.float64 else "local"',
        "tests/test_kinks.py::test_one_relu_layer_is_enough_for_the_local_rule",
        "a float64 ReLU net judged by the global rule",
    ),
    m(
        "E08",
        "fcgrad/engine/trajectory.py",
        "return np.maximum(1.0, _max_abs(_as64(a)))",
        "return np.ones(len(a))",
        "tests/test_tolerances_pinned.py::test_global_rule_bound_scales_with_the_largest_parameter",
        "absolute trajectory bounds not scaled by max(1, max|param|)",
    ),
    m(
        "E09",
        "fcgrad/engine/run.py",
        "rows.append(replace(row, ok=row.ok or row.max_abs_err <= floor))",
        "rows.append(replace(row, ok=row.ok or row.max_abs_err <= 1e3 * floor))",
        "tests/test_tolerances_pinned.py::test_finite_difference_tolerance",
        "the finite-difference rounding floor 1000× too generous",
    ),
    m(
        "E10",
        "fcgrad/engine/toolbox.py",
        'if rule == "local":  # JAX+optax starts this step where manual starts it',
        'if rule == "local" and k == 0:  # JAX+optax starts this step where manual starts it',
        "tests/test_optimizers.py::test_why_the_toolbox_judges_each_step_from_manuals_own_state",
        "the toolbox's local rule starting JAX from manual's state at step 0 only",
    ),
    m(
        "E11",
        "fcgrad/engine/trajectory.py",
        "self.acc[key].add(np.stack(mine), r, self.limit * step_scale(r))",
        "self.acc[key].add(np.stack(mine)[-1:], r[-1:], self.limit * step_scale(r[-1:]))",
        "tests/test_optimizers.py::test_a_mistake_at_one_step_alone_fails_that_step_and_no_other",
        "the toolbox judging only the last step of each block of steps",
    ),
    m(
        "E12",
        "fcgrad/engine/digits.py",
        "return rows[:, :-1], rows[:, -1].astype(int)",
        "return rows[:, 1:], rows[:, 0].astype(int)",
        "tests/test_digits.py::test_digits_are_scikit_learns_images_and_labels",
        "the digits file read with its first column as the label (scikit-learn's keeps it last)",
    ),
    # ---- the tolerances ---------------------------------------------------------------------------------------
    m(
        "T01",
        "fcgrad/engine/tolerances.py",
        "GRAD_REL_TOL_F64 = 1e-12",
        "GRAD_REL_TOL_F64 = 1e-11",
        "tests/test_tolerances_pinned.py::test_gradient_tolerance",
        "the float64 gradient tolerance loosened 10×",
    ),
    m(
        "T02",
        "fcgrad/engine/tolerances.py",
        "GRAD_REL_TOL_F32 = 1e-4",
        "GRAD_REL_TOL_F32 = 1e2",
        "tests/test_tolerances_pinned.py::test_gradient_tolerance",
        "the float32 gradient tolerance loosened a millionfold",
    ),
    m(
        "T03",
        "fcgrad/engine/tolerances.py",
        "TRAJ_ABS_TOL_F64 = 1e-12",
        "TRAJ_ABS_TOL_F64 = 3e-12",
        "tests/test_tolerances_pinned.py::test_global_rule_tolerance",
        "the global rule's float64 bound loosened 3×",
    ),
    m(
        "T04",
        "fcgrad/engine/tolerances.py",
        "FD_REL_TOL = 1e-6",
        "FD_REL_TOL = 1e-7",
        "tests/test_tolerances_pinned.py::test_finite_difference_tolerance",
        "the finite-difference tolerance tightened 10×",
    ),
    m(
        "T05",
        "fcgrad/engine/tolerances.py",
        "LOCAL_PARAM_TOL_F32 = 1e-6",
        "LOCAL_PARAM_TOL_F32 = 1e-5",
        "tests/test_tolerances_pinned.py::test_local_rule_parameter_tolerance",
        "the local rule's float32 parameter bound loosened 10×",
    ),
    m(
        "T06",
        "fcgrad/engine/tolerances.py",
        "LOCAL_LOSS_TOL_F64 = 1e-13",
        "LOCAL_LOSS_TOL_F64 = 1e-14",
        "tests/test_tolerances_pinned.py::test_local_rule_loss_tolerance",
        "the local rule's float64 loss bound tightened 10×",
    ),
    m(
        "T07",
        "fcgrad/engine/tolerances.py",
        "LOCAL_UPDATE_TOL_F64 = 1e-9",
        "LOCAL_UPDATE_TOL_F64 = 1e-8",
        "tests/test_tolerances_pinned.py::test_local_rule_share_of_the_step",
        "the local rule's float64 share of the step loosened 10×",
    ),
    m(
        "T08",
        "fcgrad/engine/tolerances.py",
        "TRAJ_ABS_TOL_F32 = 1e-4",
        "TRAJ_ABS_TOL_F32 = 1e-3",
        "tests/test_tolerances_pinned.py::test_global_rule_tolerance",
        "the global rule's float32 bound loosened 10×",
    ),
    # ---- the run description ----------------------------------------------------------------------------------
    m(
        "D01",
        "fcgrad/engine/description.py",
        "per_epoch = 1 if batch_size is None else math.ceil(samples / batch_size)",
        "per_epoch = 1 if batch_size is None else samples // batch_size",
        "tests/test_toolbox_cli.py::test_an_epoch_ends_with_the_smaller_last_batch",
        "an epoch without its last, smaller batch",
    ),
    m(
        "D02",
        "fcgrad/engine/description.py",
        'dtype = validate.check_dtype(given.get("dtype", "float64")).name',
        'dtype = validate.check_dtype("float64").name',
        "tests/test_cli.py::test_float32_exits_0",
        "--dtype ignored",
    ),
    m(
        "D03",
        "fcgrad/engine/description.py",
        'rtol=given.get("rtol"), atol=given.get("atol"), devices=given.get("devices")',
        'rtol=given.get("rtol"), atol=given.get("atol"), devices=None',
        "tests/test_cli_wiring.py::test_check_devices_compares_five_sides_over_the_shards_it_was_given",
        "--devices ignored: an ordinary check instead of the data-parallel one",
    ),
    # ---- the catalogue ------------------------------------------------------------------------------------------
    m(
        "C01",
        "fcgrad/diagnosis/catalogue.py",
        "if not np.isfinite(c) or c == 0.0 or abs(c - 1.0) < DISTINCT_FACTOR * tol:",
        "if not np.isfinite(c) or c == 0.0:",
        "tests/test_diagnosis_grid.py::test_no_entry_matches_correct_gradients_of_a_real_network",
        "the scale entry without its 'too close to 1' guard: fires on correct code (diagnose() hides it)",
    ),
    m(
        "C02",
        "fcgrad/diagnosis/signature.py",
        "SIGNATURE_REL_TOL_F32 = 1e-4",
        "SIGNATURE_REL_TOL_F32 = 0.5",
        "tests/test_tolerances_pinned.py::test_catalogue_signature_tolerance",
        "the float32 signature tolerance loosened to 50%",
    ),
    m(
        "C03",
        "fcgrad/diagnosis/signature.py",
        "SIGNATURE_REL_TOL = 1e-9",
        "SIGNATURE_REL_TOL = 1e-10",
        "tests/test_tolerances_pinned.py::test_catalogue_signature_tolerance",
        "the float64 signature tolerance tightened 10×",
    ),
    m(
        "C04",
        "fcgrad/diagnosis/catalogue.py",
        "up * (1 - _f64(y))",
        "up * (1 - _f64(y) ** 2)",
        "tests/test_diagnosis.py::test_activation_derivative_mistakes_are_named",
        "tanh' as 1 − y predicted as the right formula",
    ),
    m(
        "C05",
        "fcgrad/diagnosis/catalogue.py",
        "updated = _f64(ctx.w) - ctx.lr * _f64(ctx.grad_w)",
        "updated = _f64(ctx.w) + ctx.lr * _f64(ctx.grad_w)",
        "tests/test_diagnosis.py::test_residual_through_updated_w",
        "the residual through the updated w predicted with w + lr·grad_w",
    ),
    m(
        "C06",
        "fcgrad/diagnosis/network.py",
        'upstream = ref["residual_y"] if layer == top else ref["layers"][layer + 1]["residual_x"]',
        'upstream = ref["residual_y"] if layer == top else ref["layers"][layer]["residual_x"]',
        "tests/test_diagnosis.py::test_activation_derivative_mistakes_are_named",
        "a layer's upstream taken from its own residual_x",
    ),
    m(
        "C07",
        "fcgrad/diagnosis/toolbox.py",
        "coupled = [{k: g[k] + wd * p[k] for k in g}",
        "coupled = [{k: g[k] - wd * p[k] for k in g}",
        "tests/test_diagnosis_toolbox.py::test_planted_optimizer_mistake_is_named_on_the_failing_parameter_rows",
        "L2-instead-of-AdamW predicted with −λ·p",
    ),
    m(
        "C08",
        "fcgrad/diagnosis/toolbox.py",
        "return jax.vjp(lambda z: normalise(z, gamma, beta, 1, BN_EPS)[0], z)",
        "return jax.vjp(lambda z: normalise(z, gamma, beta, 0, BN_EPS)[0], z)",
        "tests/test_diagnosis_toolbox.py::test_on_a_correct_network_each_layers_reference_is_manuals_backward",
        "the diagnosis's batch-norm reference normalised over the features, not the samples",
    ),
    m(
        "C09",
        "fcgrad/diagnosis/toolbox.py",
        "return jax.vjp(lambda a: a * mask / (1.0 - rate), a)",
        "return jax.vjp(lambda a: a * mask * (1.0 - rate), a)",
        "tests/test_diagnosis_toolbox.py::test_on_a_correct_network_each_layers_reference_is_manuals_backward",
        "the diagnosis's dropout reference scaled by the keep rate instead of divided",
    ),
    # ---- the pytest helpers -------------------------------------------------------------------------------------
    m(
        "H01",
        "fcgrad/testing/backward.py",
        "BACKWARD_REL_TOL = 1e-10",
        "BACKWARD_REL_TOL = 1e-6",
        "tests/test_tolerances_pinned.py::test_backward_helper_relative_tolerance",
        "assert_backward_matches' tolerance loosened 10,000×",
    ),
    m(
        "H02",
        "fcgrad/testing/backward.py",
        "rtol = max(rtol, BACKWARD_REL_TOL_F32)",
        "rtol = max(rtol, 1e-2)",
        "tests/test_tolerances_pinned.py::test_backward_helper_relative_tolerance",
        "a float32 backward compared at rel 1e-2",
    ),
    m(
        "H03",
        "fcgrad/testing/fd_oracle.py",
        "g[idx] = central_difference(a, idx, value, step)",
        "g[idx] = central_difference(a, idx, value, step) * (1 + 1e-4)",
        "tests/test_layer_checks.py",
        "the finite-difference oracle off by 1e-4",
    ),
]


def _files_to_copy() -> list[str]:
    done = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                          text=True, check=True, timeout=60)  # fmt: skip
    return [f for f in done.stdout.splitlines() if (ROOT / f).is_file()]


def make_copy(where: Path) -> Path:
    """The repository's tracked and untracked-but-not-ignored files, copied under ``where/src``."""
    src = where / "src"
    for f in _files_to_copy():
        target = src / f
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, target)
    return src


def make_env(where: Path, src: Path) -> Path:
    """A virtual environment with ``src`` installed editable; everything else from this interpreter's packages."""
    env = where / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True, timeout=120)
    python = env / "bin" / "python"
    purelib = subprocess.check_output(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True, timeout=60
    ).strip()
    # a plain path entry: the packages there load, their .pth files (this checkout's editable finder) do not run
    Path(purelib, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
               "--no-build-isolation", "--no-index", "-e", str(src)]  # fmt: skip
    done = subprocess.run(install, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        sys.exit(f"mutate: the copy did not install:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return python


def run_tests(python: Path, src: Path, tests, timeout: float = MUTATION_TIMEOUT_S) -> tuple[str, str, float]:
    """(outcome, the first failing test or a note, seconds): outcome "passed", "failed", "error" or "timeout"."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONPATH", None)
    cmd = [str(python), "-m", "pytest", "-p", "no:cacheprovider", "-n0", "-x", "-q", *tests]
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=src, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", f"over {timeout:.0f} s", time.perf_counter() - start
    seconds = time.perf_counter() - start
    out = done.stdout + done.stderr
    if done.returncode == 0:
        return "passed", "", seconds
    failed = re.search(r"^(?:FAILED|ERROR) (\S+)", out, re.M)
    where = failed.group(1) if failed else out.strip().splitlines()[-1][:200]
    if done.returncode == 1:
        return "failed", where, seconds
    return "error", where, seconds  # a collection error, an internal error: counted as killed, and said


def apply(src: Path, mu: Mutation) -> str | None:
    """Plant ``mu`` in the copy; returns the original text, or None when the snippet is not there exactly once."""
    path = src / mu.path
    text = path.read_text(encoding="utf-8")
    if text.count(mu.old) != 1:
        return None
    path.write_text(text.replace(mu.old, mu.new), encoding="utf-8")
    return text


def snippet_counts() -> dict[str, int]:
    return {mu.id: (ROOT / mu.path).read_text(encoding="utf-8").count(mu.old) for mu in MUTATIONS}


def markdown(results, total_s: float) -> str:
    killed = sum(r[1] in ("failed", "error") for r in results)
    lines = [
        "# Mutation test of the checking code",
        "",
        "Each row is a realistic mistake planted in a copy of the repository (never in the working tree) by",
        "`tools/mutate.py`, with the tests that must catch it run there (`-p no:cacheprovider -x -q`). Every",
        "mutation must be killed: a test fails. The tests first run once on the unmutated copy and must pass. Not",
        "part of the default suite (it runs the suite's files dozens of times). Rerun all of them, or some, from the",
        "repository's root, with the test extra installed:",
        "",
        "```bash",
        "python tools/mutate.py --report docs/mutation.md   # all, this table rewritten",
        "python tools/mutate.py --only E04,T02              # some, the table on stdout",
        "python tools/mutate.py --check                     # every snippet still in place, nothing run",
        "```",
        "",
        "A new rule, tolerance or catalogue entry gets its line in `MUTATIONS` (tools/mutate.py): the file, the exact",
        "snippet, its mistaken form, and the tests that must catch it.",
        "",
        f"Last run: {killed} of {len(results)} killed, in {total_s / 60:.0f} minutes on a 2-core machine.",
        "",
        "| id | file | mistake | killed by |",
        "|---|---|---|---|",
    ]
    for mu, outcome, where in results:
        verdict = {"failed": f"`{where}`", "error": f"`{where}` (error)", "passed": "**survived**",
                   "timeout": "**timeout**", "missing": "**snippet not found**"}[outcome]  # fmt: skip
        what = mu.what.replace("|", "\\|")  # a | inside a cell would end it
        lines.append(f"| {mu.id} | `{mu.path}` | {what} | {verdict} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated ids")
    parser.add_argument("--list", action="store_true", help="print the mutations and stop")
    parser.add_argument("--check", action="store_true", help="check that every snippet is found exactly once")
    parser.add_argument("--no-baseline", action="store_true", help="skip the run on the unmutated copy")
    parser.add_argument("--report", type=Path, help="write the table, as markdown, to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy (its path is printed)")
    args = parser.parse_args(argv)
    chosen = MUTATIONS if not args.only else [mu for mu in MUTATIONS if mu.id in set(args.only.split(","))]
    if args.list:
        for mu in chosen:
            print(f"{mu.id}  {mu.path}: {mu.what}  [{' '.join(mu.tests)}]")
        return 0
    if args.check:
        counts = snippet_counts()
        bad = {k: v for k, v in counts.items() if v != 1 and k in {mu.id for mu in chosen}}
        for k, v in bad.items():
            print(f"{k}: found {v} times, expected once")
        print(f"{len(chosen) - len(bad)} of {len(chosen)} snippets found exactly once")
        return 1 if bad else 0
    start = time.perf_counter()
    where = Path(tempfile.mkdtemp(prefix="fcgrad-mutate-"))
    try:
        src = make_copy(where)
        python = make_env(where, src)
        print(f"copy: {src}", flush=True)
        if not args.no_baseline:
            tests = sorted({t for mu in chosen for t in mu.tests})
            outcome, first, seconds = run_tests(python, src, tests, timeout=4 * MUTATION_TIMEOUT_S)
            print(f"baseline ({len(tests)} tests, unmutated): {outcome} {first} ({seconds:.0f} s)", flush=True)
            if outcome != "passed":
                print("mutate: the tests fail on the unmutated copy: fix them first", file=sys.stderr)
                return 2
        results = []
        for mu in chosen:
            original = apply(src, mu)
            if original is None:
                results.append((mu, "missing", ""))
                print(f"{mu.id} snippet not found in {mu.path}", flush=True)
                continue
            try:
                outcome, first, seconds = run_tests(python, src, mu.tests)
            finally:
                (src / mu.path).write_text(original, encoding="utf-8")
            results.append((mu, outcome, first))
            verdict = "killed" if outcome in ("failed", "error") else outcome.upper()
            print(f"{mu.id} {verdict:8s} {seconds:5.0f} s  {mu.what}  {first}", flush=True)
        total = time.perf_counter() - start
        survivors = [mu.id for mu, outcome, _ in results if outcome not in ("failed", "error")]
        print(f"{len(results) - len(survivors)} of {len(results)} killed in {total:.0f} s; not killed: "
              f"{', '.join(survivors) or 'none'}")  # fmt: skip
        if args.report:
            args.report.write_text(markdown(results, total), encoding="utf-8")
        return 1 if survivors else 0
    finally:
        if args.keep:
            print(f"kept: {where}")
        else:
            shutil.rmtree(where, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
