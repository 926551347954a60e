"""SIGKILL a tiny training run at random moments (checkpoints written every step, so many kills land
inside a save), resume it each time, and count the runs whose final weights equal an uninterrupted
run's bit for bit. Not a timed test: it prints a count.

    python benchmarks/kill_resume.py --kills 20
"""
from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import PatchTokenizer  # noqa: E402
from rear.data.sources import Source  # noqa: E402
from rear.data.store import pretokenize  # noqa: E402

OVERRIDES = ["generator.codebook_size=16", "generator.num_classes=3", "generator.num_tokens=4", "generator.width=128",
             "generator.depth=4", "generator.heads=4", "generator.extra_position_rows=2", "generator.extra_step_rows=2",
             "generator.align.code_dim=8", "generator.align.decode_layer=3", "generator.align.projection_dim=256",
             "noise.anneal_end=30", "optim.warmup_steps=5", "steps=40", "batch_size=32", "grad_accumulation=2",
             "bf16=false", "log_every=1", "samples_per_class=0", "checkpoint_every=1", "threads=1"]


def workspace(root: Path) -> tuple[Path, Path]:
    """A tokenizer folder and a 256-item store of 2x2 tokens over 3 classes."""
    tokenizer = PatchTokenizer()
    (root / "tok").mkdir()
    save_file({k: v.contiguous() for k, v in tokenizer.state_dict().items()}, root / "tok" / "model.safetensors")
    torch.manual_seed(0)
    images, labels = torch.rand(256, 1, 8, 8), torch.arange(256) % 3
    pretokenize(Source("memory:kill", 256, ["a", "b", "c"], lambda a, b, size: (images[a:b], labels[a:b], [])),
                tokenizer, root / "store", tokenizer_path=str(root / "tok"), progress=False)
    (root / "run.yaml").write_text(f"store: {root / 'store'}\ntokenizer: {root / 'tok'}\n")
    return root / "run.yaml", root / "tok"


def command(config: Path, out: Path, resume: bool) -> list[str]:
    return [sys.executable, "-m", "rear", "train", str(config), f"out_dir={out}", *OVERRIDES,
            *(["--resume"] if resume else ["--overwrite"])]


def run_to_the_end(config: Path, out: Path) -> None:
    """Resume when a checkpoint survives, else start over; every error here is a failure."""
    resume = (out / "checkpoint").is_dir() or (out / ".checkpoint.old").is_dir()
    subprocess.run(command(config, out, resume), check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="rear-kill-"))
    config, _ = workspace(root)
    began = time.perf_counter()
    subprocess.run(command(config, root / "straight", False), check=True, capture_output=True)
    duration = time.perf_counter() - began
    reference = load_file(root / "straight" / "checkpoint" / "model.safetensors")
    exact = 0
    for trial in range(args.kills):
        out = root / f"killed-{trial}"
        process = subprocess.Popen(command(config, out, False), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        moment = rng.uniform(0.2, 1.0) * duration
        time.sleep(moment)
        process.send_signal(signal.SIGKILL)
        process.wait()
        run_to_the_end(config, out)
        final = load_file(out / "checkpoint" / "model.safetensors")
        same = final.keys() == reference.keys() and all(torch.equal(final[k], reference[k]) for k in reference)
        exact += same
        print(f"kill {trial + 1:2d} at {moment:5.1f} s of {duration:.1f} s: {'bit-exact' if same else 'DIFFERENT'}",
              flush=True)
    print(f"{exact} of {args.kills} killed runs resumed to weights bit-identical to the uninterrupted run ({root})")


if __name__ == "__main__":
    main()
