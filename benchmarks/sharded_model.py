"""A model of one data-parallel step on GPUs: compute per shard against a ring all-reduce of the gradients.

``python -m fcgrad.benchmarks.sharded_model`` prints the table of ``docs/data_parallel.md``. Per step, with
S devices, N samples, P parameters of b bytes:

    compute(n)  = t0 + F(n) / R              F: FLOPs of the step's products (``flops.step_flops``, NEEDED)
    all_reduce  = 2·(S−1)/S · P·b / BW + 2·(S−1)·α      a ring: reduce-scatter then all-gather
    one device  = compute(N);   S devices = compute(⌈N/S⌉) + all_reduce (no overlap assumed)

R and t0 are measured on the GPU of the committed run (``results/gpu.json``, jit-fused, float32 with
JAX's default TF32 matmuls); BW and α are stated below, not measured here.
"""

import json
import math
from pathlib import Path

from fcgrad.benchmarks import flops

GPU_JSON = Path(__file__).parent / "results" / "gpu.json"
NVLINK_BPS = 450e9  # NVLink 4 on an H100 SXM: about 450 GB/s per direction per GPU
PCIE_BPS = 64e9  # PCIe 5 x16: about 64 GB/s per direction
RING_STEP_S = 5e-6  # latency of one step of the ring (an assumption, the order of small NCCL messages)
BYTES = 4  # float32 gradients
DEVICES = 8  # one node of 8 GPUs
SPECS = {  # the benchmark sizes -> the measured workload whose rate R they use
    "784-256-256-10": "1024-1024-1024",  # its own point (N=256) is launch-bound: the 1024-wide rate, optimistic
    "1024-1024-1024": "1024-1024-1024",
    "4096-4096-4096": "4096-4096-4096",
    "8192-8192-8192": "8192-8192-8192",
}
BATCHES = (256, 1024, 4096, 16384, 65536)


def _sizes(spec: str) -> tuple[int, ...]:
    return tuple(int(s) for s in spec.split("-"))


def measured(path: Path = GPU_JSON) -> tuple[float, dict[str, float]]:
    """(t0, {spec: R}): the per-step overhead (the 2-4-1 step) and each workload's FLOP rate net of t0."""
    rows = [
        r
        for r in json.loads(Path(path).read_text())["rows"]
        if r["variant"] == "jit-fused" and r["device"] == "gpu" and r["dtype"] == "float32"
        if r["precision"] == "default"
    ]
    t0 = next(r["step_s_median"] for r in rows if r["sizes"] == "2-4-1")
    rates = {}
    for r in rows:
        if r["sizes"] != "2-4-1":
            f = flops.step_flops(_sizes(r["sizes"]), r["batch"], flops.NEEDED)
            rates[r["sizes"]] = f / (r["step_s_median"] - t0)
    return t0, rates


def parameters(sizes) -> int:
    return sum(n_in * n_out + n_out for n_in, n_out in zip(sizes[:-1], sizes[1:]))


def all_reduce_s(n_params: int, devices: int, bandwidth: float) -> float:
    return 2 * (devices - 1) / devices * n_params * BYTES / bandwidth + 2 * (devices - 1) * RING_STEP_S


def step_s(sizes, batch: int, rate: float, t0: float) -> float:
    return t0 + flops.step_flops(sizes, batch, flops.NEEDED) / rate


def rows(path: Path = GPU_JSON, devices: int = DEVICES) -> list[dict]:
    t0, rates = measured(path)
    out = []
    for spec, rate_of in SPECS.items():
        sizes, rate = _sizes(spec), rates[rate_of]
        n_params = parameters(sizes)
        for n in BATCHES:
            one = step_s(sizes, n, rate, t0)
            shard = step_s(sizes, math.ceil(n / devices), rate, t0)
            nv, pcie = all_reduce_s(n_params, devices, NVLINK_BPS), all_reduce_s(n_params, devices, PCIE_BPS)
            out.append(
                {
                    "sizes": spec,
                    "params_mb": n_params * BYTES / 1e6,
                    "batch": n,
                    "one_device_ms": one * 1e3,
                    "shard_ms": shard * 1e3,
                    "nvlink_ms": nv * 1e3,
                    "pcie_ms": pcie * 1e3,
                    "speedup_nvlink": one / (shard + nv),
                    "speedup_pcie": one / (shard + pcie),
                }
            )
    return out


def markdown(path: Path = GPU_JSON, devices: int = DEVICES) -> str:
    head = (
        f"| sizes | grads (MB) | N | 1 GPU step (ms) | shard compute, S={devices} (ms) | all-reduce NVLink (ms) "
        f"| all-reduce PCIe (ms) | speedup NVLink | speedup PCIe |"
    )
    lines = [head, "|" + "---|" * 9]
    for r in rows(path, devices):
        lines.append(
            f"| {r['sizes']} | {r['params_mb']:.1f} | {r['batch']} | {r['one_device_ms']:.3f} | {r['shard_ms']:.3f} "
            f"| {r['nvlink_ms']:.3f} | {r['pcie_ms']:.3f} | {r['speedup_nvlink']:.2f} | {r['speedup_pcie']:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown())
