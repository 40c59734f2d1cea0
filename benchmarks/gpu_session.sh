#!/usr/bin/env bash
# Every GPU check issue 13 still lacks, in one call of the device tool (a session lent a GPU has 15
# minutes of device time in all and 10 minutes a command): run from the repository root,
#
#     OUT=$OUT bash benchmarks/gpu_session.sh            # logs in $OUT (default ./gpu-session)
#
# Carried with the working tree (ignored paths): .peer (DeepCTR-Torch, installed where pip works:
# python -c "import sys; sys.path.insert(0, 'benchmarks'); import speed; speed.ensure_peer(__import__('pathlib').Path('.peer'))")
# and datasets/amazon-beauty (prepared here: python benchmarks/speed.py does it in /tmp/dinbench-speed,
# copy that folder). The machine has torch and the rest; the checkout runs with PYTHONPATH=.
#
# Parts, most wanted first, each with its own time limit (555 s in all, under the 600 s of a command); a
# part that fails or runs out of time is logged and the next one runs. summary.txt lists each part's
# exit status and seconds, then the lines that carry its figures.
#   1-3  host syncs: the eager sparse path; the captured step; the captured step with sparse tables
#        (graph_step.SPARSE_TABLES: capturing it at all is the check)
#   4-5  catalogue on the GPU, 10k against 4 M items, captured step: masked update (today's default)
#        against sparse tables inside the graph (--graph-sparse); which one is flat decides the default
#   6    the poolers not yet measured on a GPU, eager against captured, batch 1,024 (About.graphs_by_default)
#   7    gpu.py --quick with the defaults: the GPU targets, evaluation at the default batch
set -u
OUT=${OUT:-gpu-session}
mkdir -p "$OUT"
export PYTHONPATH=.
PY=${PYTHON:-$(command -v python || command -v python3)}  # whichever the machine calls its Python
DEVICE=${DEVICE:-cuda}  # DEVICE=cpu ITEMS=10000,60000: a smoke test of this script on a CPU (captured parts refused there)
ITEMS=${ITEMS:-10000,4000000}
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"

part() {  # part NAME LIMIT_S COMMAND...: run, log, summarise
  local name=$1 limit=$2 start rc
  shift 2
  echo "== $name (limit ${limit} s): $*" | tee -a "$SUMMARY"
  start=$(date +%s)
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  echo "   exit $rc after $(( $(date +%s) - start )) s" | tee -a "$SUMMARY"
  grep -E "without a host sync|Error|error:|items [0-9]|at [0-9,]+:|^\| |rows/s|target|batch [0-9]+:" "$OUT/$name.log" | tail -n 40 >> "$SUMMARY"
}

{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1; $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } >> "$SUMMARY" 2>&1

part 1-sync-eager-sparse 45 $PY benchmarks/cuda_sync_check.py --device "$DEVICE" --compile off --sparse
part 2-sync-graphs 45 $PY benchmarks/cuda_sync_check.py --device "$DEVICE" --compile cuda-graphs
part 3-sync-graphs-sparse 45 $PY benchmarks/cuda_sync_check.py --device "$DEVICE" --compile cuda-graphs --sparse --graph-sparse
part 4-catalogue-masked 90 $PY benchmarks/catalogue.py --device "$DEVICE" --compile cuda-graphs --poolers average,din \
  --items "$ITEMS" --interleave 20
part 5-catalogue-graph-sparse 90 $PY benchmarks/catalogue.py --device "$DEVICE" --compile cuda-graphs --poolers average,din \
  --items "$ITEMS" --interleave 20 --graph-sparse
UNMEASURED=time-decay,dot:softmax,bilinear:softmax,multihead:softmax,bst,sim:soft,eta,max
for mode in off cuda-graphs; do
  part "6-poolers-$mode" 70 $PY benchmarks/gpu.py --device "$DEVICE" --no-peer --poolers "$UNMEASURED" --batch-sizes 1024 \
    --epochs 1 --min-seconds 0 --compile "$mode" --data-dir datasets
done
part 7-gpu-quick 100 $PY benchmarks/gpu.py --device "$DEVICE" --quick --epochs 1 --min-seconds 2 --peer-dir .peer --data-dir datasets
echo "done $(date -u)" >> "$SUMMARY"
