#!/usr/bin/env bash
# The GPU checks of issue 13, for the calls of the device tool (a session lent a GPU has 15 minutes of
# device time in all, each start of a machine included, and 10 minutes a command): run from the
# repository root,
#
#     OUT=$OUT bash benchmarks/gpu_session.sh                 # every part (about 12 minutes of limits)
#     OUT=$OUT PARTS="compiled profile" bash benchmarks/gpu_session.sh   # the parts whose names start so
#
# Every part together is more than one command may take: split them, e.g. PARTS="tests compiled profile
# sync catalogue" in one call and PARTS="poolers quick" in the next (most parts end well inside their limits).
#
# logs in $OUT (default ./gpu-session). Carried with the working tree (ignored paths): .peer
# (DeepCTR-Torch, installed where pip works:
# python -c "import sys; sys.path.insert(0, 'benchmarks'); import speed; speed.ensure_peer(__import__('pathlib').Path('.peer'))")
# and datasets/amazon-beauty (prepared here: python benchmarks/speed.py does it in /tmp/dinbench-speed,
# copy that folder). The machine has torch and the rest; the checkout runs with PYTHONPATH=.
#
# Parts, each with its own time limit; a part that fails or runs out of time is logged and the next
# one runs. summary.txt lists each part's exit status and seconds, then the lines that carry its figures.
#   tests-gpu      the tests that need a GPU: a captured run's metrics against the eager run's, for every
#                  pooler --compile auto captures, and din and average with the captured step's variants
#   compiled-*     --compile on+cuda-graphs (the compiled step captured): din and average at batch 1,024
#                  and 8,192 (the targets), and din's test AUC against cuda-graphs (compile.py, synthetic)
#   profile-*      where a captured din step's GPU time goes, batch 1,024 and 8,192 (profile_train.py)
#   sync-*         host syncs: the captured step with sparse tables (capturing it at all is the check);
#                  the eager sparse path
#   catalogue-*    10k against 4 M items, captured step: sparse tables inside the graph (the default)
#                  against the masked update over whole tables (--graph-masked)
#   poolers-*      every pooler but din and average, eager against captured, batch 1,024 (About.graphs_by_default)
#   quick          gpu.py --quick with the defaults: the GPU targets, the peer, evaluation
set -u
OUT=${OUT:-gpu-session}
mkdir -p "$OUT"
export PYTHONPATH=. PYTHONUNBUFFERED=1
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-/tmp/dinbench-inductor}  # shared by the parts
PY=${PYTHON:-$(command -v python || command -v python3)}  # whichever the machine calls its Python
DEVICE=${DEVICE:-cuda}  # DEVICE=cpu ITEMS=10000,60000: a smoke test of this script on a CPU (captured parts refused there)
ITEMS=${ITEMS:-10000,4000000}
PARTS=${PARTS:-tests compiled profile sync catalogue poolers quick}
SUMMARY="$OUT/summary.txt"
touch "$SUMMARY"

wanted() {  # wanted NAME: whether a word of PARTS starts NAME
  local p
  for p in $PARTS; do [[ $1 == "$p"* ]] && return 0; done
  return 1
}

part() {  # part NAME LIMIT_S COMMAND...: run, log, summarise
  local name=$1 limit=$2 start rc
  shift 2
  wanted "$name" || return 0
  echo "== $name (limit ${limit} s): $*" | tee -a "$SUMMARY"
  start=$(date +%s)
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  echo "   exit $rc after $(( $(date +%s) - start )) s" | tee -a "$SUMMARY"
  grep -E "without a host sync|Error|error:|items [0-9]|at [0-9,]+:|^\| |rows/s|target|batch [0-9]+:|^din |^average |Self CUDA time total|passed|failed|FAILED" \
    "$OUT/$name.log" | tail -n 40 >> "$SUMMARY"
}

{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1; $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } >> "$SUMMARY" 2>&1

DATA=(--dataset amazon-beauty --data-dir datasets)
part tests-gpu 140 $PY -m pytest -q -p no:cacheprovider tests/test_compile.py -k "on_cuda"
part compiled-rates 90 $PY benchmarks/gpu.py --device "$DEVICE" --no-peer --poolers din,average \
  --batch-sizes 1024,8192 --epochs 1 --min-seconds 2 --compile on+cuda-graphs --data-dir datasets
part compiled-auc 60 $PY benchmarks/compile.py --device "$DEVICE" --poolers din --modes cuda-graphs,on+cuda-graphs \
  --batch-size 8192 --users 5000 --epochs 3
part profile-1024 30 $PY benchmarks/profile_train.py --device "$DEVICE" --pooler din --batch-size 1024 --compile cuda-graphs "${DATA[@]}" --rows 25
part profile-8192 30 $PY benchmarks/profile_train.py --device "$DEVICE" --pooler din --batch-size 8192 --compile cuda-graphs "${DATA[@]}" --rows 25
part sync-graphs-sparse 35 $PY benchmarks/cuda_sync_check.py --device "$DEVICE" --compile cuda-graphs --sparse
part catalogue-sparse 50 $PY benchmarks/catalogue.py --device "$DEVICE" --compile cuda-graphs --poolers average,din \
  --items "$ITEMS" --interleave 10
part catalogue-masked 60 $PY benchmarks/catalogue.py --device "$DEVICE" --compile cuda-graphs --poolers average,din \
  --items "$ITEMS" --interleave 10 --graph-masked
part sync-eager-sparse 40 $PY benchmarks/cuda_sync_check.py --device "$DEVICE" --compile off --sparse
OTHERS=time-decay,dot:softmax,bilinear:softmax,multihead:softmax,bst,sim:soft,eta,max
for mode in off cuda-graphs; do
  part "poolers-$mode" 70 $PY benchmarks/gpu.py --device "$DEVICE" --no-peer --poolers "$OTHERS" --batch-sizes 1024 \
    --epochs 1 --min-seconds 0 --compile "$mode" --data-dir datasets
done
part quick 100 $PY benchmarks/gpu.py --device "$DEVICE" --quick --epochs 1 --min-seconds 2 --peer-dir .peer --data-dir datasets
echo "done $(date -u)" >> "$SUMMARY"
