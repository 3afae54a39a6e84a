#!/usr/bin/env bash
# One-call GPU check of lt-detectron on the current stack (docs/install.md, "GPU check").
#
#   make gpu-carry                     prepare .gpu_carry/ (git-ignored) on a machine with the package registry
#   bash benchmarks/gpu_check.sh       on the GPU machine, from the repository root (carry: [".gpu_carry"]);
#                                      needs python3 with torch + torchvision (CUDA), no network; <= 8 minutes
#   bash benchmarks/gpu_check.sh --dry-run   the same steps on the CPU, 2 iterations and tiny benchmark sizes
#
# .gpu_carry/ holds what the GPU machine lacks: wheels/ (pure-Python and cp312 wheels of the current stack's lock:
# fvcore, iopath, yacs, omegaconf, hydra-core, antlr4, termcolor, tabulate, cloudpickle, portalocker, pycocotools,
# lvis, faster-coco-eval, and setuptools < 81 for pkg_resources), detectron2/ (the source of the Makefile's
# D2_COMMIT, from $D2_SOURCE) and, optionally, detectron2/_C*.so prebuilt with CUDA ($D2_CUDA_SO at prepare time;
# without it the check compiles Detectron2's CUDA ops, which needs nvcc and takes minutes).
#
# Steps, each with a time limit inside the budget; a failing step does not stop later ones:
#   env       GPU, driver, torch/CUDA versions
#   install   carried wheels into a private site folder; Detectron2 (prebuilt CUDA _C, else built here)
#   tests     the CUDA tests (pytest -k cuda: losses on CUDA, compat paths, no-sync check, benchmarks on CUDA)
#   losses    benchmarks/loss_throughput.py --device cuda (8192 x 1204 and 256 x 1000)
#   train     every demo head (configs/demo/lt_shapes_<head>.yaml) ITERS iterations on the device, fp32 and AMP,
#             and meta-weighting; 6 at a time
#   heads     benchmarks/head_overhead.py --device cuda (R50-FPN, 1203 classes, 800 px)
#   meta      benchmarks/meta_overhead.py --device cuda
# Output: $OUT/summary.md (one file to read: every step's status, the test counts, the tables) and $OUT/logs/*.log.
set -u
MODE=check
case "${1:-}" in
  --prepare) MODE=prepare ;;
  --dry-run) MODE=dry-run ;;
  "") ;;
  *)
    echo "usage: benchmarks/gpu_check.sh [--prepare | --dry-run]" >&2
    exit 2
    ;;
esac
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
CARRY=${GPU_CARRY:-$ROOT/.gpu_carry}

# ------------------------------------------------------------------------------------------------------ prepare
if [ "$MODE" = prepare ]; then
  set -euo pipefail
  LOCK=$ROOT/requirements/current.lock
  D2_COMMIT=$(sed -n 's/^D2_COMMIT ?= *//p' Makefile)
  D2_SOURCE=${D2_SOURCE:-git+https://github.com/facebookresearch/detectron2.git@$D2_COMMIT}
  PREP_PY=${GPU_CHECK_PYTHON:-$ROOT/.venv-current/bin/python}
  [ -x "$PREP_PY" ] || PREP_PY=$(tools/find_python.sh 3.12)
  rm -rf "$CARRY.tmp" && mkdir -p "$CARRY.tmp/wheels"
  # Exact versions from the lock: the check runs what `make setup STACK=current` installs.
  pins=()
  for name in antlr4-python3-runtime cloudpickle faster-coco-eval fvcore hydra-core iopath lvis omegaconf \
    portalocker pycocotools setuptools tabulate termcolor yacs; do
    pin=$(grep -i -E "^${name}==" "$LOCK" || true)
    [ -n "$pin" ] || { echo "error: $name is not pinned in $LOCK (make lock STACK=current)" >&2; exit 1; }
    pins+=("$pin")
  done
  echo "downloading ${#pins[@]} wheels for CPython 3.12 / manylinux x86_64 into $CARRY/wheels"
  for pin in "${pins[@]}"; do
    "$PREP_PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -d "$CARRY.tmp/wheels" "$pin" 2>/dev/null ||
      "$PREP_PY" -m pip wheel -q --no-deps -w "$CARRY.tmp/wheels" "$pin" # sdist only (fvcore): a py3 wheel
  done
  echo "Detectron2 source from $D2_SOURCE"
  mkdir -p "$CARRY.tmp/detectron2"
  if [ -f "$D2_SOURCE" ]; then
    tar xzf "$D2_SOURCE" -C "$CARRY.tmp/detectron2" --strip-components=1
  elif [ -d "$D2_SOURCE" ]; then
    cp -a "$D2_SOURCE"/. "$CARRY.tmp/detectron2/"
  else
    url=${D2_SOURCE#git+}
    git clone -q --filter=blob:none "${url%@*}" "$CARRY.tmp/d2git" && git -C "$CARRY.tmp/d2git" checkout -q "${url##*@}"
    git -C "$CARRY.tmp/d2git" archive HEAD | tar x -C "$CARRY.tmp/detectron2"
    rm -rf "$CARRY.tmp/d2git"
  fi
  rm -rf "$CARRY.tmp/detectron2"/{datasets,demo,docs,dev,.github} "$CARRY.tmp/detectron2"/detectron2/_C*.so
  if [ -n "${D2_CUDA_SO:-}" ]; then
    cp "$D2_CUDA_SO" "$CARRY.tmp/detectron2/detectron2/_C.cpython-312-x86_64-linux-gnu.so"
    echo "prebuilt CUDA _C: $D2_CUDA_SO"
  fi
  # lt_detectron's own C extensions (the LVIS evaluator), built for CPython 3.12 here: the GPU machine's Python may
  # have no headers to build them
  "$PREP_PY" setup.py -q build_ext --build-lib "$CARRY.tmp/lt_ext" --build-temp "$CARRY.tmp/lt_ext_build" >/dev/null
  rm -rf "$CARRY.tmp/lt_ext_build"
  { echo "commit=$D2_COMMIT"; echo "source=$D2_SOURCE"; echo "cuda_so=${D2_CUDA_SO:-none (built on the GPU machine)}"
    echo "lock_sha256=$(sha256sum "$LOCK" | cut -c1-16)"; } >"$CARRY.tmp/MANIFEST"
  rm -rf "$CARRY" && mv "$CARRY.tmp" "$CARRY"
  echo "ready: $CARRY ($(du -sh "$CARRY" | cut -f1)); device call: bash benchmarks/gpu_check.sh, carry [\".gpu_carry\"]"
  exit 0
fi

# ------------------------------------------------------------------------------------------------------ check
OUT=${OUT:-/tmp/lt_gpu_check}
mkdir -p "$OUT/logs"
LOGS=$OUT/logs
SUMMARY=$OUT/summary.md
T0=$(date +%s)
BUDGET=${GPU_CHECK_BUDGET:-450} # seconds; the device call's limit should be ~8 minutes
if [ "$MODE" = dry-run ]; then
  DEVICE=cpu ITERS=${GPU_CHECK_ITERS:-2} PARALLEL=${GPU_CHECK_PARALLEL:-1} SCALE=${GPU_CHECK_TIME_SCALE:-4}
  PY=${GPU_CHECK_PYTHON:-$ROOT/.venv-current/bin/python}
else
  DEVICE=cuda ITERS=${GPU_CHECK_ITERS:-100} PARALLEL=${GPU_CHECK_PARALLEL:-6} SCALE=${GPU_CHECK_TIME_SCALE:-1}
  PY=${GPU_CHECK_PYTHON:-python3}
fi
BUDGET=$((BUDGET * SCALE))
SITE=${GPU_CHECK_SITE:-/tmp/lt_gpu_site}
D2=${GPU_CHECK_D2:-/tmp/lt_gpu_detectron2}
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 MPLBACKEND=Agg
export PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
export LT_SHAPES_DIR=${LT_SHAPES_DIR:-/tmp/lt_gpu_lt_shapes}

left() { echo $((T0 + BUDGET - $(date +%s))); }
# cap LIMIT RESERVE: LIMIT seconds (times SCALE), or fewer so that RESERVE seconds stay for the steps after
cap() {
  local c=$(($1 * SCALE)) l
  l=$(($(left) - ${2:-0} * SCALE))
  ((l < c)) && c=$l
  echo "$c"
}
md() { echo "$*" >>"$SUMMARY"; }
STATUS=()
# step NAME LIMIT COMMAND: COMMAND under bash -c with a time limit, output to logs/NAME.log; one status line
step() {
  local name=$1 limit=$2 cmd=$3 s rc
  if ((limit < 10)); then
    STATUS+=("| $name | skipped | - | only ${limit}s left |")
    return 99
  fi
  s=$(date +%s)
  timeout -k 5 "$limit" bash -c "set -o pipefail; $cmd" >"$LOGS/$name.log" 2>&1
  rc=$?
  local how=ok
  ((rc != 0)) && how="FAILED rc=$rc"
  ((rc == 124 || rc == 137)) && how="TIMED OUT"
  STATUS+=("| $name | $how | $(($(date +%s) - s)) s | limit ${limit}s |")
  echo "[gpu_check] $name: $how ($(($(date +%s) - T0)) s)"
  return $rc
}

: >"$SUMMARY"
[ -d "$CARRY" ] || { echo "error: $CARRY missing. Fix: run 'make gpu-carry' first and carry .gpu_carry." >&2; exit 1; }

# env ---------------------------------------------------------------------------------------------------------
step env "$(cap 30 0)" "
if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; else echo 'no nvidia-smi'; fi
'$PY' -c 'import sys, torch; print(sys.version.split()[0], \"torch\", torch.__version__, \"cuda\", torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else \"no CUDA device\")'
command -v nvcc && nvcc --version | tail -1; nproc; cat '$CARRY/MANIFEST'"
CARD=$("$PY" -c 'import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU (dry run)")' 2>/dev/null)
if [ "$DEVICE" = cuda ] && ! "$PY" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
  echo "error: $PY's torch sees no CUDA device (use --dry-run on a CPU machine)" >&2
  exit 1
fi

# install -----------------------------------------------------------------------------------------------------
rm -rf "$SITE" "$D2" && cp -a "$CARRY/detectron2" "$D2"
[ -e "$D2/detectron2/model_zoo/configs" ] || ln -s ../../configs "$D2/detectron2/model_zoo/configs"
step install_wheels "$(cap 60 0)" "'$PY' -m pip install -q --no-index --no-deps --no-compile --target '$SITE' '$CARRY'/wheels/*.whl && ls '$SITE'"
export PYTHONPATH=$SITE:$D2:$ROOT${PYTHONPATH:+:$PYTHONPATH}
# the evaluator's C extensions: the carried cp312 build, else built here
step lt_extensions "$(cap 60 0)" "cp -n '$CARRY'/lt_ext/lt_detectron/evaluation/*.so lt_detectron/evaluation/ 2>/dev/null
'$PY' -c 'import lt_detectron.evaluation' 2>/dev/null || '$PY' setup.py -q build_ext --inplace >/dev/null
'$PY' -c 'import lt_detectron.evaluation; print(\"lt_detectron.evaluation imports\")'"
# lt_shapes is CPU work: generate it while the rest installs and the tests run.
# ensure_lt_shapes: a complete dataset from an earlier check is reused, an incomplete one regenerated.
(timeout -k 5 "$(cap 200 150)" "$PY" -c "from lt_detectron.data import ensure_lt_shapes; print(ensure_lt_shapes('$LT_SHAPES_DIR'))" \
  >"$LOGS/generate_lt_shapes.log" 2>&1; echo $? >"$LOGS/generate_lt_shapes.rc") &
GEN=$!
D2_CHECK="import torch, detectron2, detectron2._C as C; print('detectron2', detectron2.__version__, 'cuda ops', C.has_cuda())"
if "$PY" -c "$D2_CHECK; import sys; sys.exit(not (C.has_cuda() or '$DEVICE' == 'cpu'))" >"$LOGS/detectron2.log" 2>&1; then
  D2_HOW="prebuilt _C ($(grep -o 'cuda ops.*' "$LOGS/detectron2.log"))"
else
  rm -f "$D2"/detectron2/_C*.so
  cuda_env=""
  [ "$DEVICE" = cuda ] && cuda_env="FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=\${TORCH_CUDA_ARCH_LIST:-9.0}"
  step build_detectron2 "$(cap 240 200)" "cd '$D2' && $cuda_env MAX_JOBS=\$(nproc) '$PY' setup.py build_ext --inplace >/dev/null && '$PY' -c \"$D2_CHECK\""
  D2_HOW="built here (rc=$?)"
fi

# tests -------------------------------------------------------------------------------------------------------
step cuda_tests "$(cap 90 280)" "'$PY' -m pytest -q -rfEsx -p no:cacheprovider tests -k cuda"

# losses benchmark --------------------------------------------------------------------------------------------
if [ "$MODE" = dry-run ]; then
  LOSS_ARGS="--repeats 1 --min-ms 0 --shapes 64x11 16x5 --divergence-shape 64x8x10"
else
  LOSS_ARGS="--repeats 15"
fi
step loss_throughput "$(cap 90 220)" "'$PY' benchmarks/loss_throughput.py --device $DEVICE $LOSS_ARGS --out '$OUT/loss_throughput.md'"

# train -------------------------------------------------------------------------------------------------------
wait "$GEN"
GEN_RC=$(cat "$LOGS/generate_lt_shapes.rc" 2>/dev/null || echo "?")
RUNS=("meta:configs/demo/lt_shapes_meta.yaml:MODEL.LT.META.START_ITER $((ITERS / 5))") # first: the slowest
for cfg in configs/demo/lt_shapes_*.yaml; do
  head=$(basename "$cfg" .yaml)
  head=${head#lt_shapes_}
  case "$head" in base | meta) continue ;;
    *)
      RUNS+=("$head:$cfg:")
      # Detectron2's AMPTrainer requires CUDA: the dry run trains fp32 only.
      [ "$DEVICE" = cuda ] && RUNS+=("$head+amp:$cfg:SOLVER.AMP.ENABLED True")
      ;;
  esac
done
train_one() { # NAME:CONFIG:EXTRA -> logs/train_NAME.log, result line in $OUT/train/NAME.txt
  local name=${1%%:*} rest=${1#*:} cfg extra out rc
  cfg=${rest%%:*}
  extra=${rest#*:}
  out=/tmp/lt_gpu_train/$name
  rm -rf "$out" && mkdir -p "$out"
  # shellcheck disable=SC2086
  "$PY" tools/train_net.py --config-file "$cfg" MODEL.DEVICE "$DEVICE" SOLVER.MAX_ITER "$ITERS" \
    SOLVER.CHECKPOINT_PERIOD 1000000 TEST.EVAL_PERIOD 0 DATASETS.TEST "()" DATALOADER.NUM_WORKERS 2 \
    OUTPUT_DIR "$out" $extra >"$LOGS/train_$name.log" 2>&1
  rc=$?
  "$PY" - "$out/metrics.json" "$name" "$rc" >"$OUT/train/$name.txt" <<'PYEOF'
import json, math, sys
path, name, rc = sys.argv[1:]
try:
    rows = [json.loads(line) for line in open(path) if line.strip()]
except OSError:
    rows = []
rows = [r for r in rows if "total_loss" in r]
last = rows[-1] if rows else {}
losses = [r["total_loss"] for r in rows]
finite = bool(losses) and all(math.isfinite(v) for v in losses)
it = last.get("iteration", -1) + 1
speed = last.get("time", float("nan"))
ok = rc == "0" and finite
print(f"| {name} | {'ok' if ok else 'FAILED'} | {it} | {losses[0] if losses else float('nan'):.3f} | "
      f"{losses[-1] if losses else float('nan'):.3f} | {'yes' if finite else 'NO'} | {speed:.3f} | {rc} |")
PYEOF
}
export -f train_one
export PY DEVICE ITERS LOGS OUT
mkdir -p "$OUT/train"
TRAIN_LIMIT=$(cap 200 75)
if ((TRAIN_LIMIT >= 10)); then
  s=$(date +%s)
  printf '%s\n' "${RUNS[@]}" | timeout -k 5 "$TRAIN_LIMIT" xargs -d '\n' -P "$PARALLEL" -I{} bash -c 'train_one "$@"' _ {}
  rc=$?
  STATUS+=("| train (${#RUNS[@]} runs, $PARALLEL at a time) | $( ((rc == 0)) && echo ok || echo "rc=$rc") | $(($(date +%s) - s)) s | limit ${TRAIN_LIMIT}s |")
else
  STATUS+=("| train | skipped | - | only ${TRAIN_LIMIT}s left |")
fi

# head overhead and meta overhead -----------------------------------------------------------------------------
if [ "$MODE" = dry-run ]; then
  HEAD_ARGS="--heads cb lda --num-classes 5 --rois 16 --batch 1 --size 96 --objects 2 --iters 1 --head-iters 1 --predictor-iters 1"
  META_ARGS="--iters 1 --warmup 0 SOLVER.IMS_PER_BATCH 2 DATALOADER.NUM_WORKERS 0"
else
  HEAD_ARGS="--size 800 --batch 2 --iters 8 --head-iters 10 --predictor-iters 30"
  META_ARGS="--iters 30 --warmup 6"
fi
step head_overhead "$(cap 120 30)" "'$PY' benchmarks/head_overhead.py --device $DEVICE $HEAD_ARGS --out '$OUT/head_overhead.md'"
step meta_overhead "$(cap 60 0)" "'$PY' benchmarks/meta_overhead.py --device $DEVICE --out '$OUT/meta_overhead.txt' $META_ARGS"

# summary -----------------------------------------------------------------------------------------------------
md "# lt-detectron GPU check ($MODE)"
md ""
md "- card: $CARD; device: $DEVICE; $(date -u '+%Y-%m-%d %H:%M UTC'); total $(($(date +%s) - T0)) s of a ${BUDGET}s budget"
md "- project commit: $(git rev-parse --short HEAD 2>/dev/null || cat .source_commit 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with local changes)')"
md "- $(head -n 1 "$LOGS/env.log" 2>/dev/null | tr -d '\n'); $("$PY" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)' 2>/dev/null)"
md "- detectron2: $(grep -m1 '^commit=' "$CARRY/MANIFEST" | cut -d= -f2), $D2_HOW"
md "- lt_shapes generation: rc=$GEN_RC"
md ""
md "## Steps"
md ""
md "| step | status | time | |"
md "|---|---|---|---|"
for line in "${STATUS[@]}"; do md "$line"; done
md ""
md "## Tests"
md ""
for t in cuda_tests; do
  md "- $t: $(grep -E '[0-9]+ (passed|failed|skipped|error)' "$LOGS/$t.log" 2>/dev/null | tail -n 1 | tr -d '=')"
  grep -E '^(FAILED|ERROR|SKIPPED)' "$LOGS/$t.log" 2>/dev/null | head -n 20 | sed 's/^/  - /' >>"$SUMMARY"
done
md ""
md "## Training ($ITERS iterations, $DEVICE; total_loss from metrics.json; time = s/iteration at the end)"
md ""
md "| run | status | iterations | first loss | last loss | finite | s/iter | rc |"
md "|---|---|---|---|---|---|---|---|"
for r in "${RUNS[@]}"; do
  n=${r%%:*}
  if [ -s "$OUT/train/$n.txt" ]; then cat "$OUT/train/$n.txt" >>"$SUMMARY"; else md "| $n | NOT RUN | | | | | | |"; fi
done
for f in loss_throughput.md head_overhead.md meta_overhead.txt; do
  md ""
  md "## ${f%.*}"
  md ""
  if [ -s "$OUT/$f" ]; then cat "$OUT/$f" >>"$SUMMARY"; else md "(no result: see logs/${f%.*}.log)"; fi
done
rm -rf "$OUT/train"
cat "$SUMMARY"
