"""The `rear` command line."""
import subprocess
import sys

import pytest
from PIL import Image

from rear.cli import main


def test_demo_writes_a_class_by_class_grid(tmp_path, capsys):
    main(["demo", "--out", str(tmp_path), "--per-class", "2"])
    image = Image.open(tmp_path / "samples.png")
    assert image.size == (2 * 34 + 2, 10 * 34 + 2)  # 32x32 images, 2 px padding
    assert "samples.png" in capsys.readouterr().out


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
