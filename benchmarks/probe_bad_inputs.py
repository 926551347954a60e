"""Feed `rear` bad inputs and faults of every hardening class (issue 21) and count the outcomes.

Each case runs the CLI in-process on tiny models and files and is judged by what a user would see:
  refused    exit 2 (or 130 after Ctrl-C), one line on stderr naming the problem, no traceback, and
             nothing the case protects was created, lost or overwritten;
  traceback  an exception escaped `rear` (or its message spans several lines);
  silent     exit 0 where the input was wrong (a silent wrong result), or a protected file changed;
  lost       Ctrl-C lost finished steps (no checkpoint of the step in progress).
Not a test: it prints one line per case and the counts, and exits 1 when any case is not `refused`.

    python benchmarks/probe_bad_inputs.py [--only SUBSTRING]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import signal
import sys
import tempfile
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from conftest import random_generator, tiny_conv_vq  # noqa: E402
from rear.cli import main as rear  # noqa: E402
from rear.config import ClassifierConfig, SampleConfig  # noqa: E402
from rear.data.sources import Source  # noqa: E402
from rear.data.store import pretokenize  # noqa: E402
from rear.evaluation.classifier import train_classifier  # noqa: E402

CLEANUP = contextlib.ExitStack()  # what a case holds while it runs (a lock), released after it
TRAIN = ["generator.codebook_size=16", "generator.num_classes=3", "generator.num_tokens=4", "generator.width=32",
         "generator.depth=2", "generator.heads=2", "generator.extra_position_rows=2", "generator.extra_step_rows=2",
         "generator.align.code_dim=8", "generator.align.decode_layer=1", "generator.align.projection_dim=16",
         "noise.anneal_end=6", "optim.warmup_steps=2", "steps=6", "batch_size=8", "grad_accumulation=2", "bf16=false",
         "log_every=1", "samples_per_class=0", "checkpoint_every=1000", "threads=1"]


@dataclass
class Case:
    group: str  # the class: 1 stale input ... 12 poor one-liners
    name: str
    argv: Callable[[Path], list]  # files made in the case's own folder -> the command line
    expect: str = ""  # a piece of the one-line message
    protect: Callable[[Path], list[Path]] = lambda d: []  # files whose bytes must not change
    absent: Callable[[Path], list[Path]] = lambda d: []  # paths a refused command must not create
    patch: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    ctrl_c: Callable[[Path], bool] | None = None  # after exit 130: were the finished steps kept?
    tags: list[str] = field(default_factory=list)


def fixtures(root: Path) -> Path:
    """A generator (16 codes, 3 classes, 2x2 tokens) with its tokenizer, a store, a classifier, samples."""
    base = root / "base"
    base.mkdir()
    random_generator(codebook_size=16, num_classes=3, num_tokens=4).save_pretrained(base / "g", SampleConfig(cfg_scale=2.0))
    tiny_conv_vq().save_pretrained(base / "tok")
    torch.manual_seed(0)
    images, labels = torch.rand(64, 1, 8, 8), torch.arange(64) % 3
    pretokenize(Source("memory:probe", 64, ["a", "b", "c"], lambda a, b, size: (images[a:b], labels[a:b], [])),
                tiny_conv_vq(), base / "store", tokenizer_path=str(base / "tok"), progress=False)
    data = (torch.rand(12, 1, 8, 8), torch.arange(12) % 3)
    train_classifier(ClassifierConfig(image_size=8, num_classes=3, widths=[4, 8], feature_dim=8, epochs=1, min_steps=0, batch_size=4),
                     data, data, base / "clf", progress=False)
    gray = np.random.default_rng(0).integers(0, 256, (6, 8, 8, 1), dtype=np.uint8).repeat(3, -1)
    np.savez(base / "samples.npz", arr_0=gray, labels=np.arange(6) % 3)
    (base / "run.yaml").write_text(f"store: {base / 'store'}\ntokenizer: {base / 'tok'}\n")
    folder = base / "images"
    for c, name in enumerate(("circle", "square", "star")):
        (folder / name).mkdir(parents=True)
        for i in range(8):
            from PIL import Image

            Image.fromarray(np.full((8, 8, 3), 40 * c + i, np.uint8)).save(folder / name / f"{i}.png")
    return base


def copy(base: Path, d: Path, *names: str) -> None:
    for name in names:
        (shutil.copytree if (base / name).is_dir() else shutil.copy)(base / name, d / name)


def edit_json(path: Path, edit: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def cases(base: Path) -> list[Case]:
    B = base
    sample = lambda d, *more: ["sample", B / "g", "--tokenizer", B / "tok", "--out", d / "s", "--num-samples", "3", *more]  # noqa: E731
    train = lambda d, *more: ["train", B / "run.yaml", f"out_dir={d / 'run'}", *TRAIN, *more]  # noqa: E731
    out = []

    # 1: an input replaced in place is known by its content
    def retrained_tokenizer(d):
        copy(B, d, "tok")
        rear([str(a) for a in ["sample", B / "g", "--tokenizer", d / "tok", "--out", d / "s", "--num-samples", "3"]])
        tiny_conv_vq(seed=1).save_pretrained(d / "tok")
        return ["sample", B / "g", "--tokenizer", d / "tok", "--out", d / "s", "--num-samples", "3"]
    out.append(Case("1", "sample resumed after the tokenizer was retrained at its path", retrained_tokenizer,
                    "tokenizer weights", protect=lambda d: [d / "s" / "samples.npz"]))

    def retrained_generator(d):
        copy(B, d, "g")
        rear([str(a) for a in ["sample", d / "g", "--tokenizer", B / "tok", "--out", d / "s", "--num-samples", "3"]])
        random_generator(seed=1, codebook_size=16, num_classes=3, num_tokens=4).save_pretrained(d / "g", SampleConfig(cfg_scale=2.0))
        return ["sample", d / "g", "--tokenizer", B / "tok", "--out", d / "s", "--num-samples", "3"]
    out.append(Case("1", "sample resumed after the generator was retrained at its path", retrained_generator,
                    "generator weights", protect=lambda d: [d / "s" / "samples.npz"]))

    def store_of_another_tokenizer(d):
        tiny_conv_vq(seed=1).save_pretrained(d / "tok")
        (d / "run.yaml").write_text(f"store: {B / 'store'}\ntokenizer: {d / 'tok'}\n")
        return ["train", d / "run.yaml", f"out_dir={d / 'run'}", *TRAIN]
    out.append(Case("1", "train on a store made by another tokenizer", store_of_another_tokenizer,
                    "pretokenize again", absent=lambda d: [d / "run"]))

    def rebuilt_store(d):
        copy(B, d, "store")
        (d / "run.yaml").write_text(f"store: {d / 'store'}\ntokenizer: {B / 'tok'}\n")
        rear([str(a) for a in ["train", d / "run.yaml", f"out_dir={d / 'run'}", *TRAIN, "steps=6"]] + ["--debug"])
        shutil.rmtree(d / "store")
        images = torch.rand(64, 1, 8, 8)
        pretokenize(Source("memory:probe", 64, ["a", "b", "c"], lambda a, b, s: (images[a:b], torch.arange(a, b) % 3, [])),
                    tiny_conv_vq(), d / "store", tokenizer_path=str(B / "tok"), progress=False)
        return ["train", d / "run.yaml", f"out_dir={d / 'run'}", *TRAIN, "steps=8", "--resume"]
    out.append(Case("1", "resume after the store was rebuilt at its path", rebuilt_store, "store",
                    protect=lambda d: [d / "run" / "checkpoint" / "model.safetensors"]))

    def stats_of_another_classifier(d):
        copy(B, d, "clf")
        rear([str(a) for a in ["eval", "stats", B / "samples.npz", "--classifier", d / "clf", "--out", d / "ref.npz"]])
        shutil.rmtree(d / "clf")
        data = (torch.rand(12, 1, 8, 8), torch.arange(12) % 3)
        train_classifier(ClassifierConfig(image_size=8, num_classes=3, widths=[4, 8], feature_dim=8, epochs=1, min_steps=0,
                                          batch_size=4), data, data, d / "clf", progress=False)
        return ["eval", "score", B / "samples.npz", "--reference", d / "ref.npz", "--classifier", d / "clf",
                "--out", d / "m.json"]
    out.append(Case("1", "score against statistics of a classifier since retrained", stats_of_another_classifier,
                    "another feature extractor", absent=lambda d: [d / "m.json"]))

    # 3: --resume with another recipe
    for key, value in (("seed", 7), ("batch_size", 4), ("optim.learning_rate", 0.01), ("noise.enabled", "false"),
                       ("generator.dropout", 0.2), ("label_dropout", 0.2)):
        def resumed(d, key=key, value=value):
            rear([str(a) for a in train(d, "steps=4")])
            return train(d, "steps=4", f"{key}={value}", "--resume")
        out.append(Case("3", f"--resume with {key}={value}", resumed, key,
                        protect=lambda d: [d / "run" / "checkpoint" / "model.safetensors"]))

    # 4: sampling settings, every path
    for flag, value in (("--cfg-scale", "-5"), ("--cfg-scale", "nan"), ("--cfg-scale", "inf"), ("--cfg-power", "0"),
                        ("--temperature", "0"), ("--temperature", "1e-300"), ("--temperature", "inf"), ("--top-p", "0"),
                        ("--top-p", "1.5"), ("--top-k", "0"), ("--top-k", "-3"), ("--cfg-scale", "abc")):
        out.append(Case("4", f"sample {flag} {value}", lambda d, f=flag, v=value: sample(d, f, v),
                        flag.lstrip("-").split("-")[0], absent=lambda d: [d / "s"]))
        out.append(Case("4", f"diagnose {flag} {value}", lambda d, f=flag, v=value: [
            "diagnose", B / "g", "--tokenizer", B / "tok", "--heldout", B / "store", "--out", d / "diag.json", f, v],
            flag.lstrip("-").split("-")[0], absent=lambda d: [d / "diag.json"]))
    for key, value in (("temperature", float("inf")), ("cfg_scale", -1.0), ("top_p", 2.0), ("cfg_power", float("nan"))):
        def bad_generation(d, key=key, value=value):
            copy(B, d, "g")
            edit_json(d / "g" / "generation_config.json", lambda data: data["sample"].__setitem__(key, value))
            return ["sample", d / "g", "--tokenizer", B / "tok", "--out", d / "s", "--num-samples", "3"]
        out.append(Case("4", f"generation_config.json {key}={value}", bad_generation, key, absent=lambda d: [d / "s"]))

    # 5: broken weights
    def damaged(folder: str, fill: Callable[[dict], dict]):
        def make(d):
            copy(B, d, folder)
            from safetensors.torch import load_file, save_file

            path = d / folder / "model.safetensors"
            save_file(fill(load_file(path)), path)
            return ["sample", d / "g" if folder == "g" else B / "g", "--tokenizer", d / "tok" if folder == "tok" else B / "tok",
                    "--out", d / "s", "--num-samples", "3"]
        return make
    nan_all = lambda state: {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in state.items()}  # noqa: E731
    one_inf = lambda state: {**state, next(iter(state)): torch.full_like(next(iter(state.values())), float("inf"))}  # noqa: E731
    as_int8 = lambda state: {k: v.to(torch.int8) for k, v in state.items()}  # noqa: E731
    for folder in ("g", "tok"):
        for label, fill in (("all NaN", nan_all), ("one Inf tensor", one_inf), ("int8", as_int8)):
            out.append(Case("5", f"{'generator' if folder == 'g' else 'tokenizer'} weights {label}", damaged(folder, fill),
                            "model.safetensors", absent=lambda d: [d / "s"]))
    for folder in ("g", "tok"):
        def truncated(d, folder=folder):
            copy(B, d, folder)
            path = d / folder / "model.safetensors"
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
            return ["sample", d / "g" if folder == "g" else B / "g", "--tokenizer", d / "tok" if folder == "tok" else B / "tok",
                    "--out", d / "s", "--num-samples", "3"]
        out.append(Case("5", f"{folder} weights truncated", truncated, "safetensors", absent=lambda d: [d / "s"]))

    # 6: settings without bounds
    for override in ("optim.grad_clip=0", "optim.warmup_steps=-1", "noise.anneal_end=-3", "optim.learning_rate=nan",
                     "optim.beta2=1.5", "generator.dropout=1.5", "batch_size=0", "steps=0", "label_dropout=1.5",
                     "ema_decay=2", "optim.weight_decay=-1", "generator.width=0", "grad_accumulation=0",
                     "checkpoint_every=0", "optim.learning_rate=inf"):
        out.append(Case("6", f"train {override}", lambda d, o=override: train(d, o), override.split("=")[0],
                        absent=lambda d: [d / "run"]))

    # 7: tracebacks
    def zero_byte(d):
        (d / "zero.bin").write_bytes(b"")
        return ["convert", d / "zero.bin", d / "c"]
    out.append(Case("7", "convert a zero-byte file", zero_byte, "zero.bin", absent=lambda d: [d / "c"]))

    def truncated_npz(d):
        np.savez(d / "t.npz", arr_0=np.zeros((4, 8, 8, 3), np.uint8))
        (d / "t.npz").write_bytes((d / "t.npz").read_bytes()[:100])
        return ["eval", "score", d / "t.npz", "--reference", B / "samples.npz", "--classifier", B / "clf"]
    out.append(Case("7", "score a truncated .npz", truncated_npz, "t.npz"))
    for size in ("0", "-1"):
        out.append(Case("7", f"sample --batch-size {size}", lambda d, s=size: sample(d, "--batch-size", s), "--batch-size",
                        absent=lambda d: [d / "s"]))

    def list_yaml(d):
        (d / "list.yaml").write_text("- 1\n- 2\n")
        return ["train", d / "list.yaml"]
    out.append(Case("7", "a YAML whose top level is a list", list_yaml, "mapping"))
    for label, content in (("no units", '{"config": {}}'), ("a list", "[1, 2]"), ("units a list", '{"config": {}, "units": [1]}'),
                           ("not JSON", "{not json")):
        def tampered(d, content=content):
            (d / "res").mkdir()
            (d / "res" / "results.json").write_text(content)
            return ["study", "configs/fmnist/study.yaml", f"results={d / 'res'}", f"out={d / 'o'}"]
        out.append(Case("7", f"study with a tampered results.json ({label})", tampered, "results.json",
                        protect=lambda d: [d / "res" / "results.json"]))

    # 8: two processes on one output
    def held(d):
        from rear.lock import hold

        CLEANUP.enter_context(hold(d / "s"))  # as another process would
        return sample(d)
    out.append(Case("8", "sample into a folder another process holds", held, "in use by process",
                    absent=lambda d: [d / "s"]))

    # 10: degenerate data
    def empty_class(d):
        copy(B, d, "images")
        for f in (d / "images" / "star").iterdir():
            f.unlink()
        return ["pretokenize", f"{d / 'images'}:train", "--tokenizer", B / "tok", "--out", d / "st"]
    out.append(Case("10", "a class folder with no image", empty_class, "star", absent=lambda d: [d / "st"]))

    def unreadable(d):
        copy(B, d, "images")
        for f in (d / "images").rglob("*.png"):
            f.write_bytes(b"not a png")
        return ["pretokenize", f"{d / 'images'}:train", "--tokenizer", B / "tok", "--out", d / "st"]
    out.append(Case("10", "a folder of unreadable images", unreadable, "", absent=lambda d: [d / "st" / "manifest.json"]))

    # 12: poor one-liners
    def empty_npz(d):
        np.savez(d / "e.npz", arr_0=np.zeros((0, 8, 8, 3), np.uint8))
        return ["eval", "score", d / "e.npz", "--reference", B / "samples.npz", "--classifier", B / "clf"]
    out.append(Case("12", "score an empty .npz", empty_npz, "no images"))

    def float_npz(d):
        np.savez(d / "f.npz", arr_0=np.zeros((4, 8, 8, 3), np.float32))
        return ["eval", "score", d / "f.npz", "--reference", B / "samples.npz", "--classifier", B / "clf"]
    out.append(Case("12", "score a float .npz", float_npz, "uint8"))

    def into_a_file(d):
        (d / "afile").write_text("")
        return ["eval", "stats", B / "samples.npz", "--classifier", B / "clf", "--out", d / "afile" / "ref.npz"]
    out.append(Case("12", "write statistics under a file", into_a_file, "afile"))
    out.append(Case("12", "classifier batch larger than the data", lambda d: [
        "eval", "train-classifier", "--source", f"{B / 'images'}", "--out", d / "c", "image_size=8", "widths=[4,8]",
        "feature_dim=8", "epochs=1", "min_steps=0"], "batch_size", absent=lambda d: [d / "c"]))

    # 2: Ctrl-C at several points of a step keeps the finished steps
    import rear.train.trainer as trainer

    for point, (owner, attr) in {"batch drawing": (trainer, "global_batch"), "regularizers": (trainer, "regularize"),
                                 "clipping": (torch.nn.utils, "clip_grad_norm_"), "optimizer": (torch.optim.AdamW, "step"),
                                 "logging": (trainer.Logger, "log"), "forward/backward": (trainer, "accumulate_gradients")}.items():
        @contextlib.contextmanager
        def interrupt_in_step_3(owner=owner, attr=attr):
            real, calls = getattr(owner, attr), []

            def wrapper(*args, **kwargs):
                calls.append(1)
                if len(calls) == 3:
                    os.kill(os.getpid(), signal.SIGINT)
                return real(*args, **kwargs)
            setattr(owner, attr, wrapper)
            try:
                yield
            finally:
                setattr(owner, attr, real)

        def kept(d):
            state = d / "run" / "checkpoint" / "train_state.pt"
            return state.is_file() and torch.load(state, weights_only=True)["step"] >= 2
        out.append(Case("2", f"Ctrl-C during {point}", lambda d: train(d), "saved step", patch=interrupt_in_step_3,
                        ctrl_c=kept))
    return out


def judge(case: Case, d: Path) -> tuple[str, str]:
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            argv = [str(a) for a in case.argv(d)]
    except BaseException as error:  # noqa: BLE001: the case's own preparation failed
        CLEANUP.close()
        return "probe bug", f"preparing the case: {type(error).__name__}: {str(error)[:160]}"
    before = {p: p.read_bytes() for p in case.protect(d) if p.is_file()}
    err = io.StringIO()
    code = 0
    try:
        with case.patch(), contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            rear(argv)
    except SystemExit as exit:
        code = exit.code
    except BaseException as error:  # noqa: BLE001: anything escaping rear is what we count
        return "traceback", f"{type(error).__name__}: {str(error)[:120]} ({traceback.extract_tb(error.__traceback__)[-1].name})"
    finally:
        CLEANUP.close()
    text = err.getvalue().strip()
    ours = [line[line.index("rear "):] for line in text.splitlines() if "rear " in line]  # after a progress bar
    message = ours[-1] if ours else (text.splitlines() or [""])[-1]
    if case.ctrl_c is not None:
        return ("refused" if code == 130 and case.ctrl_c(d) else "lost"), message
    if code == 0:
        return "silent", "exit 0"
    changed = [p.name for p, data in before.items() if not p.is_file() or p.read_bytes() != data]
    created = [p.name for p in case.absent(d) if p.exists()]
    if changed or created:
        return "silent", f"exit {code} but {'changed ' + str(changed) if changed else 'created ' + str(created)}"
    if "Traceback" in text or not text.endswith(message):  # a message of several lines ends in a foreign line
        return "traceback", message
    if case.expect.lower() not in message.lower():
        return "refused?", f"does not name {case.expect!r}: {message}"
    return "refused", message


def serve_cases(base: Path) -> list[tuple[str, str]]:
    """(verdict, line) for bodies posted to `rear serve`: a short 4xx, nothing echoed unbounded, still serving."""
    try:
        from starlette.testclient import TestClient

        from rear.serve import build_app, load_studio
    except ImportError as error:
        return [("skipped", f"rear serve bodies: {error} (pip install -e '.[serve,test]')")]
    client = TestClient(build_app(load_studio(base / "g", base / "tok")))
    bodies = {"invalid UTF-8": b"\xff\xfe not utf-8", "nesting 100,000 deep": b"[" * 100_000 + b"]" * 100_000,
              "not JSON": b"{not json", "20 MB of spaces": b" " * 20_000_000, "a JSON list": b"[1, 2]",
              "a 1 MB class name": json.dumps({"classes": ["x" * 1_000_000]}).encode(),
              "cfg_scale -1": b'{"classes": [0], "cfg_scale": -1}', "cfg_scale NaN": b'{"classes": [0], "cfg_scale": NaN}',
              "count 10^9": b'{"classes": [0], "count": 1000000000}', "an unknown class": b'{"classes": ["zebra"]}',
              "temperature 1e-300": b'{"classes": [0], "temperature": 1e-300}', "seed a string": b'{"seed": "abc"}'}
    verdicts = []
    for name, body in bodies.items():
        reply = client.post("/api/generate", content=body, headers={"Content-Type": "application/json"})
        alive = client.get("/api/info").status_code == 200
        good = reply.status_code in (400, 413) and len(reply.text) < 400 and alive
        verdict = "refused" if good else ("traceback" if reply.status_code >= 500 else "silent")
        verdicts.append((verdict, f"[ 9] {verdict:<9} serve body {name}: {reply.status_code} {reply.text[:120]}"))
    return verdicts


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="run the cases whose name contains this")
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.chdir(ROOT)
    counts: Counter = Counter()
    with tempfile.TemporaryDirectory() as tmp:
        base = fixtures(Path(tmp))
        for i, case in enumerate(c for c in cases(base) if args.only in c.name):
            d = Path(tmp) / f"case{i}"
            d.mkdir()
            verdict, message = judge(case, d)
            counts[verdict] += 1
            print(f"[{case.group:>2}] {verdict:<9} {case.name}: {message[:160]}", flush=True)
        if "serve".startswith(args.only) or args.only in "serve body":
            for verdict, line in serve_cases(base):
                counts[verdict] += 1
                print(line, flush=True)
    print(f"\n{sum(counts.values())} cases: " + ", ".join(f"{n} {v}" for v, n in counts.most_common()))
    sys.exit(0 if set(counts) == {"refused"} else 1)


if __name__ == "__main__":
    run()
