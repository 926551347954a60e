#!/usr/bin/env bash
# The GPU rows of benchmarks/README.md in one run (about 8 minutes on an H200), from the repo root:
#     OUT=DIR PEERS=DIR bash benchmarks/gpu_figures.sh
# PEERS (optional) holds checkouts reAR/ (github QY-H00/reAR) and LlamaGen/ (github
# FoundationVision/LlamaGen) for the side-by-side sampler rows. Output also goes to $OUT/gpu_figures.log.
set -u
OUT=${OUT:-gpu_figures}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PY:-python3}
REAR_B="--preset rear-b --codes 1024 --classes 1000 --tokens 256 --device cuda"
step() { local limit=$1; shift; echo "\$ $*"; (cd benchmarks && timeout "$limit" $PY "$@" 2>&1 | grep -v -i warn); echo; }
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    $PY -c "import torch; print('torch', torch.__version__)"
    step 150 compiled_equals_eager.py --device cuda
    step 240 bench_sampling.py $REAR_B --batch 128 --dtype bfloat16 --compile --skip-recompute --repeats 3
    step 90 bench_train.py $REAR_B --batch 64 --repeats 10
    if [ -n "${PEERS:-}" ]; then
        step 150 compare_train.py --official "$PEERS/reAR" --preset rear-b --codes 1024 --classes 1000 --tokens 256 \
            --device cuda --batch 64 --repeats 10
        step 150 compare_samplers.py --official "$PEERS/reAR" --llamagen "$PEERS/LlamaGen" $REAR_B --batch 128 \
            --dtype bfloat16 --repeats 2
    fi
} 2>&1 | tee "$OUT/gpu_figures.log"
