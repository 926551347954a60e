#!/usr/bin/env bash
# The GPU rows of benchmarks/README.md in one run (issue 25; about 9 minutes on an H100 or H200), from the
# repo root:
#     OUT=DIR PEERS=DIR bash benchmarks/gpu_figures.sh
# PEERS (optional) holds checkouts reAR/ (github QY-H00/reAR) and LlamaGen/ (github
# FoundationVision/LlamaGen) for the side-by-side rows. Output goes to $OUT/gpu_figures.log, the
# profiler's kernel table of one rear-b generate to $OUT/decode_kernels.txt. DRY=1 runs every step at a
# tiny size on the CPU (a check of the script, no figures). PART=1 runs only rear's own rows (numerics,
# profile, sampling, training: about 7 minutes), PART=2 only the side-by-side rows and NCCL (about 5): each
# half fits a 10-minute command.
set -u
OUT=${OUT:-gpu_figures}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PY:-python3}
if [ -n "${DRY:-}" ]; then
    SIZE="--preset rear-tiny --codes 16 --classes 4 --tokens 16 --device cpu"
    DEVICE=cpu BATCH=4 BATCHES="4 8" DTYPE=float32 REPEATS=1
else
    SIZE="--preset rear-b --codes 1024 --classes 1000 --tokens 256 --device cuda"
    DEVICE=cuda BATCH=128 BATCHES="64 128 256" DTYPE=bfloat16 REPEATS=3
fi
step() { local limit=$1; shift; echo "\$ $*"; (cd benchmarks && timeout "$limit" $PY "$@" 2>&1 | grep -v -i "warn\|self.gen = func"); echo; }
{
    if [ "$DEVICE" = cuda ]; then nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; fi
    $PY -c "import torch; print('torch', torch.__version__)"
    if [ "${PART:-1}" = 1 ]; then
        # numerics first: compiled == eager tokens on this device (both backbones)
        step 150 compiled_equals_eager.py --device $DEVICE
        # 1. where a decode step's time goes: per-variant ms/step, then torch.profiler's table of one generate
        step 200 profile_decode.py $SIZE --batch $BATCH --dtype $DTYPE --steps 40 --kernels "$OUT/decode_kernels.txt"
        step 240 bench_sampling.py $SIZE --batch $BATCH --dtype $DTYPE --compile --skip-recompute --repeats $REPEATS
        # 2. the training step: eager and compiled (the trainer's compile=true), fused AdamW, bf16 autocast, batches
        step 300 bench_train.py $SIZE --batch $BATCHES --repeats 10 --compile
    fi
    if [ "${PART:-2}" = 2 ] && [ -n "${PEERS:-}" ]; then
        step 200 compare_train.py --official "$PEERS/reAR" $SIZE --batch ${BATCHES%% *} --repeats 10 --compile
        # 4. like for like: ours (RAR, then the Llama backbone) beside LlamaGen at the same size, each compiled
        step 200 compare_samplers.py --official "$PEERS/reAR" --llamagen "$PEERS/LlamaGen" $SIZE --batch $BATCH \
            --dtype $DTYPE --repeats 2 --modes eager compiled
        step 200 compare_samplers.py --llamagen "$PEERS/LlamaGen" $SIZE --backbone llama --batch $BATCH \
            --dtype $DTYPE --repeats 2 --modes eager compiled
    fi
    # 3. NCCL: the 2-rank == 1-rank test with one rank per GPU (NCCL refuses two ranks on one device)
    if [ "${PART:-2}" != 2 ]; then
        :
    elif [ "$DEVICE" = cuda ] && [ "$(nvidia-smi -L | wc -l)" -ge 2 ]; then
        echo "\$ pytest tests/test_train.py -k two_process (NCCL, 2 GPUs)"
        timeout 300 $PY -m pytest -q -x tests/test_train.py -k two_process_ddp 2>&1 | tail -3
    else
        echo "NCCL: fewer than 2 GPUs here; the 2-rank == 1-rank test needs 2 (NCCL refuses two ranks on one device)"
    fi
} 2>&1 | tee "$OUT/gpu_figures${PART:+_part$PART}.log"
