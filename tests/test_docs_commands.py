"""The commands the docs show cannot go stale: every `rear` line parses with the real parser and names
configs that exist, every `make` target and benchmark script exists, and the Fashion-MNIST pipeline and
the own-images recipe of the README run end to end, in order, on a fake dataset with tiny settings."""
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from rear.cli import build_parser, main
from test_fashion_mnist import fake_fashion_mnist

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# appended to a command so that it runs in seconds on the fake data (later key=value pairs win)
TOKENIZER = ["steps=2", "batch_size=8", "eval_size=10", "model.codebook_size=16", "model.code_dim=4",
             "model.widths=[8,8,16]", "model.res_blocks=[0,0,1]", "model.groups=4"]
GENERATOR = ["steps=2", "batch_size=8", "grad_accumulation=1", "log_every=1", "sample_every=0", "samples_per_class=0",
             "noise.anneal_end=2", "optim.warmup_steps=1", "generator.codebook_size=16", "generator.width=32",
             "generator.depth=2", "generator.heads=2", "generator.align.code_dim=4", "generator.align.decode_layer=1",
             "generator.align.projection_dim=16"]
CLASSIFIER = ["epochs=1", "min_steps=0", "widths=[8,16]", "feature_dim=16", "batch_size=16"]
FLAGS = {"--num-samples": "20", "--count": "10", "--samples": "10", "--batch-size": "10"}


def shell_commands(text: str) -> list[str]:
    """Every command line of the ```bash blocks, continuations joined, comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.split(r"\s#\s|\s#$|^#", line)[0].strip()
            if line:
                commands.append(line)
    return commands


def rear_argv(command: str) -> list[str] | None:
    """The arguments after `rear` (or `torchrun ... -m rear`), or None for another program."""
    words = shlex.split(command)
    if words[0] == "rear":
        return words[1:]
    if words[0] == "torchrun" and "rear" in words:
        return words[words.index("rear") + 1:]
    return None


def all_commands() -> list[tuple[str, str]]:
    return [(doc.name, command) for doc in DOCS for command in shell_commands(doc.read_text())]


def test_the_docs_show_commands():
    names = {rear_argv(c)[0] for _, c in all_commands() if rear_argv(c)}
    assert {"tokenizer", "pretokenize", "train", "sample", "eval", "diagnose", "study", "serve"} <= names


@pytest.mark.parametrize("doc, command", all_commands(), ids=lambda v: v if v.endswith(".md") else v[:60])
def test_every_command_parses_and_names_existing_files(doc, command):
    argv = rear_argv(command)
    words = shlex.split(command)
    if argv is None:
        if words[0] == "make":
            targets = re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), flags=re.M)
            assert all(w in targets for w in words[1:] if "=" not in w), f"{doc}: no make target in {command!r}"
        elif words[0] == "python":
            assert (ROOT / words[1]).is_file(), f"{doc}: {words[1]} does not exist"
        else:
            pytest.fail(f"{doc}: a command of a program the docs test does not know: {command!r}")
        return
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
    except SystemExit:
        pytest.fail(f"{doc}: `rear {' '.join(argv)}` does not parse")
    assert all("=" in a and not a.startswith("-") for a in extra), f"{doc}: unknown arguments {extra} in {command!r}"
    for word in words:
        if word.startswith("configs/"):
            assert (ROOT / word).is_file(), f"{doc}: {word} does not exist"


def section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start:end if end > 0 else None]


def tiny(argv: list[str]) -> list[str] | None:
    """The command with tiny settings, or None where it is not run here (serve blocks, torchrun is DDP)."""
    argv = [FLAGS.get(argv[i - 1], a) if i else a for i, a in enumerate(argv)]
    head = tuple(a for a in argv[:2] if not a.startswith("-"))
    if head[0] == "serve":
        return None
    extra = {("tokenizer", "train"): TOKENIZER, ("eval", "train-classifier"): CLASSIFIER}.get(head[:2], [])
    extra = GENERATOR if head[0] == "train" else extra
    if head[0] in ("diagnose",) and "--count" not in argv:
        extra = ["--count", "10"]
    return [*argv, *extra, "--threads", "1"]


def run_recipe(heading: str, tmp_path, monkeypatch) -> list[str]:
    """Run every `rear` line of a README section in order in `tmp_path`; returns the commands run."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    monkeypatch.setenv("REAR_DATA", str(fake_fashion_mnist(tmp_path / "fmnist", train=100, test=40)))
    ran = []
    for command in shell_commands(section((ROOT / "README.md").read_text(), heading)):
        argv = rear_argv(command)
        if argv is None or command.startswith("torchrun") or (argv := tiny(argv)) is None:
            continue
        main(argv)
        ran.append(" ".join(argv[:2]))
    return ran


def test_the_fashion_mnist_pipeline_runs_as_written(tmp_path, monkeypatch):
    ran = run_recipe("## The pipeline, step by step", tmp_path, monkeypatch)
    assert len(ran) >= 9 and (tmp_path / "runs/fmnist/rear/checkpoint").is_dir()
    assert (tmp_path / "samples/samples.npz").is_file() and (tmp_path / "store.png").is_file()


def own_images_block() -> list[str]:
    """The command lines of the one bash block of the README's own-images section."""
    text = section((ROOT / "README.md").read_text(), "## Train on your own images")
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1, "the own-images section holds one bash block, run as it stands"
    return shell_commands(f"```bash\n{blocks[0]}```")


@pytest.mark.slow
@pytest.mark.parametrize("colour", [True, False], ids=["colour", "gray"])
def test_the_own_images_block_runs_verbatim(tmp_path, monkeypatch, colour):
    """Every line exactly as the README prints it (steps cut by the documented environment variables), on a
    tiny folder of shapes: it ends with runs/own/score.json (class accuracy, FID, KID, the ceiling) and the
    samples."""
    import json

    from shapes import make_shapes

    make_shapes(tmp_path / "my_images", classes=3, per_class=50, gray=not colour)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    for name, steps in (("CLASSIFIER", "20"), ("TOKENIZER", "20"), ("GENERATOR", "10")):
        monkeypatch.setenv(f"REAR_OWN_{name}_STEPS", steps)
    commands = own_images_block()
    assert all("my_images" in c or "runs/own" in c for c in commands)
    for command in commands:
        argv = rear_argv(command)
        assert argv is not None, f"not a rear command: {command!r}"
        main(argv)
    score = json.loads((tmp_path / "runs/own/score.json").read_text())
    assert {"class_accuracy", "fid", "kid", "kid_se", "precision", "recall", "ceiling", "warnings"} <= set(score)
    assert {"accuracy_originals", "accuracy_reconstructions", "fid", "kid"} <= set(score["ceiling"])
    assert any("trust KID" in w for w in score["warnings"])  # 15 held-out images in 256 dims: said
    with np.load(tmp_path / "runs/own/samples/samples.npz") as samples:
        assert samples["arr_0"].shape[1:] == (32, 32, 3) and len(samples["arr_0"]) == score["num_samples"]
        assert bool((samples["arr_0"][..., :1] != samples["arr_0"]).any()) == colour  # colour in, colour out
    tokenizer = json.loads((tmp_path / "runs/own/tokenizer/config.json").read_text())
    assert tokenizer["channels"] == (3 if colour else 1)
