#!/usr/bin/env bash
# The CPU rows of benchmarks/README.md in one run (about 10 minutes on 2 cores), from the repo root,
# on an otherwise idle machine (on a CPU with native bf16 also the bf16 sampling and training rows):
#     PEERS=DIR bash benchmarks/cpu_figures.sh [LOG]
# PEERS holds checkouts reAR/ (github QY-H00/reAR) and LlamaGen/ (github FoundationVision/LlamaGen).
set -u
LOG=${1:-cpu_figures.log}
PY=${PY:-.venv/bin/python}
export PYTHONUNBUFFERED=1
step() { echo "\$ $*"; $PY "$@" 2>&1 | grep -v -i "warn\|self.gen = func"; echo; }
{
    lscpu | grep -E "^Model name|^CPU\(s\)"
    grep -o -w 'avx2\|avx512f\|avx512_bf16\|amx_bf16' /proc/cpuinfo | sort | uniq -c
    step benchmarks/bench_sampling.py --compile
    step benchmarks/compare_samplers.py --official "$PEERS/reAR" --llamagen "$PEERS/LlamaGen"
    step benchmarks/compare_samplers.py --official "$PEERS/reAR" --llamagen "$PEERS/LlamaGen" --modes compiled
    step benchmarks/compare_samplers.py --llamagen "$PEERS/LlamaGen" --backbone llama --modes eager compiled
    step benchmarks/compare_train.py --official "$PEERS/reAR"
    step benchmarks/bench_dropout.py
    step benchmarks/decode_overhead.py
    if grep -q -w 'avx512_bf16\|amx_bf16' /proc/cpuinfo; then  # native bf16: the bf16 rows too
        step benchmarks/bench_sampling.py --dtype bfloat16 --skip-recompute
        step benchmarks/bench_train.py
    fi
} 2>&1 | tee "$LOG"
