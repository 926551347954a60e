"""The `rear` command line."""
import subprocess
import sys

import pytest
from PIL import Image

from rear.cli import main
from test_fashion_mnist import fake_fashion_mnist


def test_demo_runs_every_stage_then_reuses_them(tmp_path, capsys):
    data = fake_fashion_mnist(tmp_path / "data", train=40, test=20)
    tokenizer_yaml = tmp_path / "tok.yaml"
    tokenizer_yaml.write_text(
        "steps: 3\nbatch_size: 8\neval_size: 10\nmodel: {codebook_size: 16, code_dim: 4, widths: [8, 8, 16], "
        "res_blocks: [0, 0, 1], groups: 4}\n")
    generator_yaml = tmp_path / "gen.yaml"
    generator_yaml.write_text(
        "generator: {codebook_size: 16, num_classes: 10, num_tokens: 64, width: 32, depth: 2, heads: 2, "
        "extra_position_rows: 2, extra_step_rows: 2, align: {decode_layer: 1, projection_dim: 16, code_dim: 4}}\n"
        "noise: {anneal_end: 4}\noptim: {warmup_steps: 1}\nsample: {cfg_scale: 2.0}\n"
        "steps: 4\nbatch_size: 8\ngrad_accumulation: 1\nlog_every: 2\nsample_every: 0\nsamples_per_class: 2\n")
    args = ["demo", "--root", str(tmp_path / "run"), "--data-dir", str(data),
            "--tokenizer-config", str(tokenizer_yaml), "--config", str(generator_yaml)]
    main(args)
    out = capsys.readouterr().out
    image = Image.open(tmp_path / "run" / "samples.png")
    assert image.size == (2 * 34 + 2, 10 * 34 + 2)  # 2 per class, 10 classes, 32x32 images, 2 px padding
    assert (tmp_path / "run" / "generator" / "loss.png").is_file()
    assert "samples.png" in out and "loss.png" in out
    main(args)
    out = capsys.readouterr().out
    assert "reusing the tokenizer" in out and "reusing the token store" in out
    import shutil

    shutil.rmtree(tmp_path / "run" / "generator" / "checkpoint")  # a first try killed before its checkpoint
    main(args)  # restarts the generator over the logs that try left
    assert (tmp_path / "run" / "generator" / "checkpoint").is_dir()


def test_info_lists_release_counts(capsys):
    main(["info", "rear-b"])
    assert "260,923,648" in capsys.readouterr().out


def test_convert_round_trip_and_refusal_to_overwrite(tmp_path):
    from pathlib import Path

    fixture = Path(__file__).parent / "fixtures" / "official_tiny"
    main(["convert", str(fixture / "model.safetensors"), str(fixture / "config.yaml"), str(tmp_path / "ckpt")])
    assert (tmp_path / "ckpt" / "config.json").is_file()
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", str(fixture / "model.safetensors"), str(fixture / "config.yaml"), str(tmp_path / "ckpt")])
    assert exit_info.value.code == 2


def test_errors_are_one_line_with_nonzero_exit(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "rear", "convert", str(tmp_path / "none.bin"), "c.yaml", str(tmp_path / "o")],
        capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "not found" in result.stderr


@pytest.mark.parametrize("command", ["demo", "info", "convert"])
def test_every_subcommand_has_help(command):
    result = subprocess.run([sys.executable, "-m", "rear", command, "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "usage: rear" in result.stdout


def test_preview_shows_each_view_of_the_same_items(tmp_path, monkeypatch):
    """Row v of the grid is view v of the same evenly spaced items (row 1 mirrors row 0)."""
    import torch
    from safetensors.torch import save_file

    from conftest import PatchTokenizer
    from rear.data.sources import Source
    from rear.data.store import pretokenize

    tokenizer = PatchTokenizer()
    (tmp_path / "tok").mkdir()
    save_file({k: v.contiguous() for k, v in tokenizer.state_dict().items()}, tmp_path / "tok" / "model.safetensors")
    images = torch.rand(6, 1, 8, 8)
    pretokenize(Source("memory:p", 6, ["a"], lambda a, b, size: (images[a:b], torch.zeros(b - a, dtype=torch.long), [])),
                tokenizer, tmp_path / "store", tokenizer_path=str(tmp_path / "tok"), progress=False)
    shown = {}
    monkeypatch.setattr("rear.images.save_grid", lambda x, path, columns: shown.update(x=x, columns=columns) or path)
    monkeypatch.setattr("rear.tokenizer.load.load_tokenizer", lambda path, device="cpu": tokenizer)
    main(["preview", str(tmp_path / "store"), "--count", "3", "--out", str(tmp_path / "p.png")])
    expected = torch.cat([tokenizer.decode(tokenizer.encode(images[[0, 2, 5]])),
                          tokenizer.decode(tokenizer.encode(images[[0, 2, 5]].flip(-1)))])
    assert shown["columns"] == 3 and torch.allclose(shown["x"], expected)


def test_progress_in_a_file_is_sparse(tmp_path):
    """A background run's log holds a few ASCII updates, not one per step."""
    script = ("from rear.progress import bar\nimport time\nb = bar(range(2000), desc='x')\n"
              "for i in b:\n    time.sleep(0.0005)\n    b.set_postfix(loss=i)\n")
    with open(tmp_path / "log.txt", "w") as log:
        subprocess.run([sys.executable, "-c", script], stderr=log, check=True)
    text = (tmp_path / "log.txt").read_text()
    assert text.count("\r") <= 3 and "2000/2000" in text and "█" not in text


COMPUTING = (["demo"], ["tokenizer", "train"], ["train"], ["pretokenize"], ["preview"], ["sample"], ["serve"],
             ["reproduce"], ["eval", "score"], ["eval", "stats"], ["eval", "train-classifier"], ["diagnose"], ["study"])


@pytest.mark.parametrize("command", COMPUTING, ids=" ".join)
def test_every_computing_command_takes_threads(command, capsys):
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    assert "--threads" in capsys.readouterr().out


def test_threads_policy_and_announcement(monkeypatch, capsys):
    import torch

    from rear import threads

    before = torch.get_num_threads()
    try:
        monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
        monkeypatch.setattr(threads.os, "getloadavg", lambda: (1.2, 0.0, 0.0))
        assert threads.default_threads() == (3, "4 cores, load 1.2")  # one core taken by the load
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
        assert threads.default_threads()[0] == 1  # three free cores shared by two ranks
        monkeypatch.setattr(threads.os, "getloadavg", lambda: (9.0, 0.0, 0.0))
        assert threads.default_threads()[0] == 1  # never below one
        assert threads.use("sample", 2) == 2 and torch.get_num_threads() == 2
        assert threads.use("study", None, configured=1) == 1
        out = capsys.readouterr().out
        assert "rear sample: 2 CPU threads (--threads" in out and "rear study: 1 CPU thread (the config's threads" in out
        with pytest.raises(ValueError, match="--threads must be at least 1"):
            threads.use("sample", 0)
    finally:
        torch.set_num_threads(before)


def test_a_command_announces_its_threads_and_restores_them(tmp_path, capsys):
    import torch

    before = torch.get_num_threads()
    try:
        with pytest.raises(SystemExit):
            main(["eval", "score", str(tmp_path / "missing.npz"), "--reference", "x", "--classifier", "c",
                  "--threads", "1"])
        assert "rear eval: 1 CPU thread (--threads" in capsys.readouterr().out
        assert torch.get_num_threads() == before  # set for the command, restored after it
    finally:
        torch.set_num_threads(before)
