"""Time one data-parallel SGD step over S devices against one device: ``python -m fcgrad.benchmarks.sharded``.

Variants, each keeping on training from where its previous call stopped:
- ``manual-1`` / ``manual-S``: the hand-derived step on the whole batch / over S shards with the
  NumPy ring all-reduce (the shards run one after another on the host: this times the bookkeeping);
- ``jax-1``: the jitted step on one device; ``jax-jit-S`` / ``jax-shard_map-S``: the same step over
  a mesh of S devices (``reference.sharded``);
- ``psum-S``: only the all-reduce of a parameter-sized buffer over the S devices (``shard_map``+``psum``).

On a CPU the S devices are XLA host devices: threads of one process sharing the machine's cores and
memory. With 2 cores, S = 4 devices cannot run 4 shards at once, and their "all-reduce" is a copy in
shared memory, not a link. What such a run shows: that the sharded step compiles and runs, and the
fixed cost per step of the collectives and of synchronising the devices. What it cannot show: any
speedup from more devices, or the cost of an interconnect. ``docs/data_parallel.md`` models that.
"""

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from functools import partial

import numpy as np

from fcgrad.benchmarks.timing import FULL, Budget, measure
from fcgrad.benchmarks.workloads import make_workload, parse_spec
from fcgrad.engine.sharded import arrange_devices
from fcgrad.manual import network
from fcgrad.manual import sharded as manual_sharded
from fcgrad.manual.errors import FcgradError

DEFAULT_SPECS = ("784-256-256-10:256", "1024-1024-1024:1024")
QUICK_SPECS = ("2-4-1", "6-9-3:8")
# Every JAX step below waits for the one before, on one device as on S. Host devices share one
# pool of threads; with more devices than cores, steps queued ahead can hold the threads that the
# devices of the running step need for its all-reduce, and the run stops (XLA aborts a collective
# whose devices do not all arrive within 40 s: seen here with 4 devices on 2 cores).
SMOKE = Budget(min_block_s=0.001, per_variant_s=0.01, min_repeats=3, max_repeats=3)  # --quick: runs, not numbers


@dataclass
class Timed:
    name: str
    run: object  # run(k): k steps, finished on return
    steps_per_call: int = 1


def _manual(wl, n: int) -> Timed:
    trainable = [{"w": True, "b": True}] * len(wl.params)
    if n == 1:
        state = [wl.params]

        def run(k):
            for _ in range(k):
                g = network.loss_and_gradients(state[0], wl.x, wl.t, wl.activations, wl.loss)
                state[0] = network.sgd_update(state[0], g.layers, wl.lr, trainable)

        return Timed("manual-1", run)
    xs, ts = manual_sharded.split_columns(wl.x, n), manual_sharded.split_columns(wl.t, n)
    replicas = [[wl.params] * n]

    def run_sharded(k):
        for _ in range(k):
            g = manual_sharded.shard_step(replicas[0], xs, ts, wl.batch, wl.activations, wl.loss)
            replicas[0] = manual_sharded.update_replicas(replicas[0], g.reduced, wl.lr, trainable)

    return Timed(f"manual-{n}", run_sharded)


def _jax(wl, devices, engine: str, name: str) -> Timed:
    from fcgrad.reference import sharded as rs

    params, (x, t, mask), mesh, n_total = rs.placed(wl.params, wl.x, wl.t, devices, wl.dtype, engine, "explicit")
    trainable = ((True, True),) * len(wl.params)
    step = partial(
        rs.sgd_step,
        mesh=mesh,
        engine=engine,
        form="explicit",
        n_total=n_total,
        activations=wl.activations,
        loss_name=wl.loss,
        trainable=trainable,
    )
    state = [params]

    def run(k):
        for _ in range(k):  # each step waits for the last (see above SMOKE)
            _, state[0] = step(state[0], x, t, mask, wl.lr)
            state[0][0]["w"].block_until_ready()

    return Timed(name, run)


def _psum(wl, devices) -> Timed:
    """The all-reduce alone: every device holds a buffer the size of all parameters and psums it."""
    import jax
    import jax.numpy as jnp
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    n_params = sum(v.size for layer in wl.params for v in layer.values())
    mesh = Mesh(np.array(devices), ("data",))
    buffers = jax.device_put(jnp.ones((len(devices), n_params), wl.dtype), NamedSharding(mesh, P("data")))
    reduce = jax.jit(jax.shard_map(lambda b: jax.lax.psum(b, "data"), mesh=mesh, in_specs=P("data"), out_specs=P()))

    def run(k):
        for _ in range(k):
            reduce(buffers).block_until_ready()

    return Timed(f"psum-{len(devices)}", run)


def bench(spec: str, n: int, dtype: str, budget, devices) -> list[dict]:
    """Rows ``{variant, sizes, batch, dtype, devices, step_s_median, step_s_iqr, vs_one_device}``."""
    from fcgrad.reference import x64_for

    sizes, batch = parse_spec(spec)
    wl = make_workload(sizes, batch, dtype)
    with x64_for(dtype):
        variants = [
            _manual(wl, 1),
            _manual(wl, n),
            _jax(wl, devices[:1], "jit", "jax-1"),
            _jax(wl, devices, "jit", f"jax-jit-{n}"),
            _jax(wl, devices, "shard_map", f"jax-shard_map-{n}"),
            _psum(wl, devices),
        ]
        timings = measure(variants, budget)
    base = {"manual": timings[0].median, "jax": timings[2].median}
    rows = []
    for v, tm in zip(variants, timings):
        family = v.name.split("-")[0]
        rows.append(
            {
                "variant": v.name,
                "sizes": wl.label,
                "batch": batch,
                "dtype": dtype,
                "devices": 1 if v.name.endswith("-1") else n,
                "step_s_median": tm.median,
                "step_s_iqr": tm.iqr,
                "vs_one_device": base[family] / tm.median if family in base else None,
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    lines = [f"{'sizes':<16}{'N':>6} {'dtype':<8}{'variant':<18}{'step (median)':>14}{'IQR':>11}  1-device/this"]
    for r in rows:
        ratio = f"{r['vs_one_device']:.2f}" if r["vs_one_device"] is not None else "-"
        lines.append(
            f"{r['sizes']:<16}{r['batch']:>6} {r['dtype']:<8}{r['variant']:<18}"
            f"{r['step_s_median'] * 1e3:>11.3f} ms{r['step_s_iqr'] * 1e3:>8.3f} ms  {ratio}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fcgrad.benchmarks.sharded", description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=4, help="devices in the mesh (default 4)")
    parser.add_argument("--sizes", nargs="+", help=f"specs such as 784-256-256-10:256 (default {DEFAULT_SPECS})")
    parser.add_argument("--dtypes", nargs="+", default=["float64", "float32"], choices=["float64", "float32"])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and a short budget (a smoke test)")
    parser.add_argument("--json", metavar="PATH", help="also write the rows and the devices as JSON")
    args = parser.parse_args(argv)
    try:
        devices = arrange_devices(args.devices)  # first: JAX fixes its CPU device count when it starts
        for spec in args.sizes or ():
            parse_spec(spec)
    except FcgradError as exc:
        print(f"benchmarks.sharded: error: {exc}", file=sys.stderr)
        return 2
    specs = args.sizes or (QUICK_SPECS if args.quick else DEFAULT_SPECS)
    rows = []
    for spec in specs:
        for dtype in args.dtypes:
            print(f"timing {spec} {dtype} over {len(devices)} {devices[0].platform} devices", file=sys.stderr)
            rows += bench(spec, args.devices, dtype, SMOKE if args.quick else FULL, devices)
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            result = {"devices": [str(d) for d in devices], "budget": asdict(SMOKE if args.quick else FULL)}
            json.dump({**result, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
