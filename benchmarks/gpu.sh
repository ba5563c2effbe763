#!/usr/bin/env bash
# The GPU benchmark, run once on a lent H100 from the repository root:
#     PYTHONPATH=. bash benchmarks/gpu.sh
# Writes into $OUT (default ./gpu-out): nvidia-smi.txt, gpu.log, gpu.json (rows + "drift"),
# gpu.txt (tables and targets) and gpu.png when matplotlib is there.
# JAX variants on the GPU: float32 with the default matmul precision (TF32) and "highest", and float64;
# JAX also on the host CPU for nets up to 1024 wide; NumPy variants on the host CPU up to 1024 wide.
# FCGRAD_GPU_SMOKE=1 runs the same code paths on the CPU in a few seconds (tiny sizes) to catch typos.
set -euo pipefail
export PYTHONUNBUFFERED=1
export PYTHONPATH="${PYTHONPATH:-.}"
PY="${PYTHON:-python3}"
OUT="${OUT:-./gpu-out}"
mkdir -p "$OUT"

if [[ "${FCGRAD_GPU_SMOKE:-0}" == 1 ]]; then
    ARGS=(--device cpu --quick --sizes 2-4-1 16-32-8:16 24-24-24 --precisions default highest
          --numpy-upto 16 --drift 16-32-8:16 24-24-24)
    LIMIT=120
else
    ARGS=(--device gpu --per-variant-s 0.4 --min-repeats 5 --numpy-upto 1024 --cpu-jax-upto 1024)
    LIMIT=330  # seconds; the run writes gpu.json after every workload, so a cut run keeps its rows
fi
# A partial rerun: FCGRAD_GPU_SIZES="2-4-1 784-256-256-10" (default: all five sizes) and
# FCGRAD_GPU_DRIFT=none (default: 784-256-256-10 4096-4096-4096); merge it into an earlier run with
# python -m benchmarks.merge old.json new.json merged.json
if [[ -n "${FCGRAD_GPU_SIZES:-}" ]]; then
    read -r -a sizes <<<"$FCGRAD_GPU_SIZES"
    ARGS+=(--sizes "${sizes[@]}")
fi
if [[ "${FCGRAD_GPU_SMOKE:-0}" != 1 ]]; then
    read -r -a drift <<<"${FCGRAD_GPU_DRIFT:-784-256-256-10 4096-4096-4096}"
    [[ "${drift[0]}" == none ]] || ARGS+=(--drift "${drift[@]}")
fi

{ nvidia-smi || echo "nvidia-smi: not available"; } 2>&1 | tee "$OUT/nvidia-smi.txt"
"$PY" -c 'import jax, numpy; print("jax", jax.__version__, "numpy", numpy.__version__, "devices", jax.devices())' \
    2>&1 | tee "$OUT/gpu.log"

status=0
timeout "$LIMIT" "$PY" -m benchmarks "${ARGS[@]}" --json "$OUT/gpu.json" >"$OUT/gpu.txt" 2> >(tee -a "$OUT/gpu.log" >&2) \
    || status=$?
echo "benchmark exit status: $status" | tee -a "$OUT/gpu.log"

if [[ -s "$OUT/gpu.json" ]]; then
    if "$PY" -c 'import matplotlib' 2>/dev/null; then
        "$PY" -m benchmarks.plot "$OUT/gpu.json" "$OUT/gpu.png" 2>&1 | tee -a "$OUT/gpu.log" || true
    else
        echo "matplotlib missing: draw later with python -m benchmarks.plot gpu.json gpu.png" | tee -a "$OUT/gpu.log"
    fi
    # the tables again from the JSON (complete even when the run was cut short), last in the output
    "$PY" -m benchmarks.report "$OUT/gpu.json" >"$OUT/gpu.txt" 2>>"$OUT/gpu.log" || true
fi
cat "$OUT/gpu.txt"
exit "$status"
