"""Milliseconds per one-token decode step, by way of running it: where does a sampler's time go?

    python benchmarks/profile_decode.py --device cuda --preset rear-b --codes 1024 --classes 1000 \
        --tokens 256 --batch 128 --dtype bfloat16

Times `--steps` consecutive steps on one decoding state, after the prefix and a whole warm-up pass, for:
eager (int index: the filled prefix, no mask), eager static (tensor index: the whole cache under a
mask, the shapes a compiled step sees), torch.compile without CUDA graphs (attending the whole cache, and
the fixed spans rear's sampler uses: rear.generator.cache.span_for), with them
(reduce-overhead: rear's compiled step on a GPU), and the eager static step captured as one CUDA
graph by hand. Prints the compiler's counters (recompiles, CUDA-graph skips) at the end.
--kernels FILE also profiles one whole `generate` (CFG 4, the device's default: compiled on a GPU) with
torch.profiler and writes its operator and kernel table, by self device time, to FILE: the sampling ops
between steps, the casts and the attention kernels, not the decode step alone.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from bench_sampling import add_model_args, sampling_model, sync
from rear.generator.cache import span_for
from rear.generator.sampling import decode_one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--skip", nargs="*", default=[], help="variants to leave out")
    parser.add_argument("--kernels", help="write torch.profiler's table of one whole generate here")
    args = parser.parse_args()
    model, device, labels = sampling_model(args)
    config = model.config
    rows = torch.cat([labels, torch.full_like(labels, model.null_label)])
    tokens = torch.randint(0, args.codes, (rows.shape[0],), device=device)
    steps = min(args.steps, args.tokens - 2)

    def timed(name: str, static: bool, step) -> None:
        with torch.no_grad():
            for timing in (False, True):  # a whole warm-up pass first: it compiles (and records) every span
                state = model.setup_caches(rows, static=static)
                model.prefill(state)
                sync(device)
                start = time.perf_counter()
                for i in range(steps):
                    step(state, i)
                sync(device)
        print(f"{name:<36} {(time.perf_counter() - start) / steps * 1e3:8.2f} ms/step", flush=True)

    index = lambda i: torch.tensor([i], device=device)  # noqa: E731
    variants = {
        "eager": (False, lambda s, i: decode_one(model, s, tokens, i)),
        "eager-static": (True, lambda s, i: decode_one(model, s, tokens, index(i))),
    }
    inductor = torch.compile(decode_one, fullgraph=True, dynamic=False)
    variants["compiled"] = (True, lambda s, i: inductor(model, s, tokens, index(i)))
    P = model.prefix_length  # t_i sits at position i + P; the sampler's compiled step attends the span covering it
    variants["compiled-spans"] = (True, lambda s, i: inductor(model, s, tokens, index(i), span_for(i + P, s.cache.length)))
    if device.type == "cuda":
        graphs = torch.compile(decode_one, mode="reduce-overhead", fullgraph=True, dynamic=False)
        variants["compiled-cudagraphs"] = (True, lambda s, i: graphs(model, s, tokens, index(i)))
        variants["compiled-cudagraphs-spans"] = (True, lambda s, i: graphs(model, s, tokens, index(i),
                                                                           span_for(i + P, s.cache.length)))
        captured = {}

        def by_hand(s, i):  # one CUDA graph of the eager static step, inputs in fixed buffers
            if "graph" not in captured:
                captured["index"], captured["tokens"] = index(i), tokens.clone()
                stream = torch.cuda.Stream()
                stream.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(stream):
                    decode_one(model, s, captured["tokens"], captured["index"])
                torch.cuda.current_stream().wait_stream(stream)
                captured["graph"] = torch.cuda.CUDAGraph()
                with torch.cuda.graph(captured["graph"]):
                    captured["out"] = decode_one(model, s, captured["tokens"], captured["index"])
            captured["index"].fill_(i)
            captured["tokens"].copy_(tokens)
            captured["graph"].replay()
            return captured["out"]

        variants["cuda-graph-by-hand"] = (True, by_hand)
    print(f"device {device} {args.dtype} preset {args.preset} width {config.width} depth {config.depth} "
          f"tokens {args.tokens} batch {args.batch} (rows {rows.shape[0]})")
    for name, (static, step) in variants.items():
        if name not in args.skip:
            timed(name, static, step)
    from torch._dynamo.utils import counters

    print({k: dict(v) for k, v in counters.items() if k in ("stats", "inductor", "recompiles", "graph_break")})
    if args.kernels:
        write_kernel_table(model, labels, device, args.kernels)


def write_kernel_table(model, labels: torch.Tensor, device: torch.device, path: str) -> None:
    """torch.profiler over one whole generate (after a warm-up one), its table by self time on the device."""
    from torch.profiler import ProfilerActivity, profile

    from rear.generator.sampling import compile_pays

    run = lambda: model.generate(labels, cfg_scale=4.0, cfg_power=2.5, compiled=compile_pays(device))  # noqa: E731
    run()
    sync(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        run()
        sync(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=key, row_limit=60, max_name_column_width=90)
    Path(path).write_text(f"one generate: batch {labels.shape[0]}, CFG 4, compiled={compile_pays(device)}, "
                          f"{model.config.num_tokens} tokens\n{table}\n")
    print(f"wrote {path}: the top rows by {key}")
    print("\n".join(table.splitlines()[:14]))


if __name__ == "__main__":
    main()
