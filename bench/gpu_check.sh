#!/usr/bin/env bash
# Everything the speed docs' GPU rows need, in one run of about 8 minutes on one CUDA GPU (make bench-gpu):
#   1. the CUDA-only tests (recorded iterations equal eager ones; TF32 / bf16 losses within tolerance)
#   2. every model eager and with CUDA graphs against the plain loop, Lightning's overhead per batch
#   3. five Triple-GAN runs sharing the GPU (e.g. five labeled splits at once)
#   4. a short real run of the paper's preset (its measured it/s and ETA are printed by callbacks.schedule)
# Results go to OUT (default bench/results/gpu_<date>); each step has its own time limit, a failed one is reported
# and the next one runs. PYTHON: the interpreter (default .venv/bin/python, else python3). Steps 1 and 4 read MNIST from
# GAN_LIGHTNING_DATA or ./data (torchvision's layout, data/MNIST/raw/*.gz; a machine without internet needs the files
# there: the tests skip without them, the preset run would try to download them); the benchmarks use random images.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
OUT=${OUT:-bench/results/gpu_$(date +%Y%m%d_%H%M)}
"$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" || { echo "error: no CUDA GPU visible; this script measures one" >&2; exit 2; }
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.csv" 2>&1 || true
failed=0
step() {  # step NAME SECONDS COMMAND...: run with a time limit, its output kept in OUT/NAME.log
  local name=$1 limit=$2; shift 2
  echo "== $name (at most ${limit} s)"
  local start=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "   exit $rc after $((SECONDS - start)) s; last lines:"; tail -n 8 "$OUT/$name.log" | sed 's/^/   /'
  [ $rc -eq 0 ] || failed=1
}
step tests 150 "$PY" -m pytest -q -p no:cacheprovider -k "cuda or matmul_precision or bf16" tests/test_optimised_paths.py tests/test_cli.py
step speed_eager 120 "$PY" -m bench.speed --device cuda --iters 200 --repeats 2 --out "$OUT" --tag eager
step speed_graphs 120 "$PY" -m bench.speed --device cuda --cuda-graphs --iters 300 --repeats 2 --out "$OUT" --tag graphs
step speed_graphs_tf32 60 "$PY" -m bench.speed --device cuda --cuda-graphs --models gan triple_gan --iters 300 --repeats 2 --out "$OUT" --tag graphs_tf32 trainer.matmul_precision=high
step sharing 90 "$PY" -m bench.speed --device cuda --cuda-graphs --sharing 1 5 --models triple_gan --iters 300 --repeats 1 --out "$OUT"
step paper_preset 150 "$PY" -m gan_lightning experiment=triple_gan_mnist100 logger=csv callbacks.generator_metrics=null \
  trainer.max_time=00:00:02:00 paths.output_dir="$OUT/paper_run"
exit $failed
