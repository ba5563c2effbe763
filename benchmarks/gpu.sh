#!/usr/bin/env bash
# The GPU benchmark in one command, from the repository root, on a machine with CUDA JAX:
#     PYTHONPATH=. bash benchmarks/gpu.sh OUTDIR
# Needs no network. Writes into OUTDIR: nvidia-smi.txt, gpu.log (progress), gpu.json (rows, drift and
# the performance goals; rewritten after every workload (--checkpoint), so a run cut short keeps what it measured),
# gpu.txt (tables, drift, goals) and gpu.png when matplotlib is installed. Within 7 minutes: the benchmark is cut at 360 s.
# JAX variants on the GPU: float32 with the default matmul precision (TF32) and "highest", and float64;
# JAX also on the host CPU for nets up to 1024 wide; NumPy variants on the host CPU up to 1024 wide.
# FCGRAD_GPU_SMOKE=1 runs the same steps on the CPU with tiny sizes in seconds (tests/test_benchmarks.py).
# A partial rerun: FCGRAD_GPU_SIZES="2-4-1 784-256-256-10" (default: all five sizes) and
# FCGRAD_GPU_DRIFT=none (default: 784-256-256-10 4096-4096-4096); merge it into an earlier run with
# python -m fcgrad.benchmarks.merge old.json new.json merged.json
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: PYTHONPATH=. bash benchmarks/gpu.sh OUTDIR" >&2
    exit 2
fi
OUTDIR="$1"
mkdir -p "$OUTDIR"
export PYTHONUNBUFFERED=1
export PYTHONPATH="${PYTHONPATH:-.}"
PY="${PYTHON:-python3}"
START=$SECONDS
say() { echo "[gpu.sh $((SECONDS - START)) s] $*" | tee -a "$OUTDIR/gpu.log" >&2; }
: >"$OUTDIR/gpu.log"

if [[ "${FCGRAD_GPU_SMOKE:-0}" == 1 ]]; then
    ARGS=(--device cpu --quick --sizes 6-9-3:5 --dtypes float32 --precisions default highest
          --numpy-upto 16 --per-variant-s 0.01 --min-repeats 2 --drift 6-9-3:5)
    LIMIT=120
else
    ARGS=(--device gpu --per-variant-s 0.3 --min-repeats 5 --numpy-upto 1024 --cpu-jax-upto 1024)
    LIMIT=360  # seconds for the benchmark itself; with the steps around it the script ends within 7 minutes
    if [[ -n "${FCGRAD_GPU_SIZES:-}" ]]; then
        read -r -a sizes <<<"$FCGRAD_GPU_SIZES"
        ARGS+=(--sizes "${sizes[@]}")
    fi
    read -r -a drift <<<"${FCGRAD_GPU_DRIFT:-784-256-256-10 4096-4096-4096}"
    [[ "${drift[0]}" == none ]] || ARGS+=(--drift "${drift[@]}")
fi

say "1/4 the machine: nvidia-smi, JAX's devices"
{ nvidia-smi || echo "nvidia-smi: not available"; } >"$OUTDIR/nvidia-smi.txt" 2>&1
"$PY" -c 'import jax, numpy; print("jax", jax.__version__, "numpy", numpy.__version__, "devices", jax.devices())' \
    2>&1 | tee -a "$OUTDIR/gpu.log" >&2

say "2/4 the benchmark (at most $LIMIT s): python -m fcgrad.benchmarks ${ARGS[*]}"
status=0
timeout "$LIMIT" "$PY" -m fcgrad.benchmarks "${ARGS[@]}" --checkpoint --json "$OUTDIR/gpu.json" >"$OUTDIR/gpu.txt" \
    2> >(tee -a "$OUTDIR/gpu.log" >&2) || status=$?
if [[ $status == 124 ]]; then
    say "the benchmark reached its time limit: gpu.json keeps the workloads measured so far"
else
    say "benchmark exit status: $status"
fi

if [[ -s "$OUTDIR/gpu.json" ]]; then
    say "3/4 the figure"
    if "$PY" -c 'import matplotlib' 2>/dev/null; then
        "$PY" -m fcgrad.benchmarks.plot "$OUTDIR/gpu.json" "$OUTDIR/gpu.png" >>"$OUTDIR/gpu.log" 2>&1 || say "the figure failed (see gpu.log)"
    else
        say "matplotlib missing: draw it later with python -m fcgrad.benchmarks.plot gpu.json gpu.png"
    fi
    say "4/4 the tables and goals from gpu.json (complete even when the run was cut short)"
    "$PY" -m fcgrad.benchmarks.report "$OUTDIR/gpu.json" >"$OUTDIR/gpu.txt" 2>>"$OUTDIR/gpu.log" || say "the report failed (see gpu.log)"
else
    say "no gpu.json: see gpu.log"
fi
cat "$OUTDIR/gpu.txt"
say "done; files in $OUTDIR"
exit "$status"
