"""Every mistake is one line on stderr, exit 2, naming the file or key, and nothing is lost."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from conftest import random_generator, tiny_conv_vq
from rear.checkpoint import save_generator
from rear.cli import main
from rear.config import ConvVQConfig
from rear.data.store import Source, pretokenize
from rear.tokenizer.conv_vq import ConvVQTokenizer, save_tokenizer


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny generator folder (32 codes, 5 classes, 16 tokens), a conv VQ tokenizer that fits it, a store."""
    root = tmp_path_factory.mktemp("files")
    save_generator(random_generator(), root / "gen")
    save_tokenizer(ConvVQTokenizer(ConvVQConfig(image_size=16, codebook_size=32, code_dim=8, widths=[8, 8, 8],
                                                res_blocks=[0, 0, 0], groups=4)), root / "tok")
    # 8x8 images -> 2x2 tokens of 16 codes, 8 dims
    patch = tiny_conv_vq()
    save_tokenizer(patch, root / "patch")
    images, labels = torch.rand(16, 1, 8, 8), torch.arange(16) % 3
    pretokenize(Source("memory:train", 16, ["a", "b", "c"], lambda a, b, size: (images[a:b], labels[a:b], [])),
                patch, root / "store", tokenizer_path=str(root / "patch"), progress=False)
    return root


def fails(capsys, *argv):
    """Run `rear argv` in-process: the exit code must be 2 and stderr one line; returns that line."""
    with pytest.raises(SystemExit) as exit:
        main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert exit.value.code == 2 and err.count("\n") == 0 and "Traceback" not in err, err
    return err


def copy_of(folder, tmp_path, name="copy"):
    import shutil

    return shutil.copytree(folder, tmp_path / name)


def test_config_mistakes(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [1, 2\n")
    assert "Key 'foo' not in 'TrainConfig'" in fails(capsys, "train", "configs/fmnist/demo.yaml", "foo=1")
    assert "Key 'nope' not in 'GeneratorConfig' (key generator.nope)" in fails(
        capsys, "train", "configs/fmnist/demo.yaml", "generator.nope=1")
    assert f"config {bad} is not valid YAML" in fails(capsys, "train", bad)
    assert "store is not set" in fails(capsys, "train", "configs/fmnist/demo.yaml")
    assert "steps must be >= 1, got -5" in fails(capsys, "train", "configs/fmnist/demo.yaml", "store=s", "tokenizer=t",
                                                 f"out_dir={tmp_path / 'o'}", "steps=-5")
    assert not (tmp_path / "o").exists()
    assert "Key 'bogus' not in 'TokenizerTrainConfig'" in fails(
        capsys, "tokenizer", "train", "configs/fmnist/tokenizer.yaml", "--source", "fashion-mnist", "bogus=1")
    assert "Key 'depth' not in 'ClassifierConfig'" in fails(capsys, "eval", "train-classifier", "depth=3",
                                                           "--out", tmp_path / "c")


@pytest.mark.parametrize("damage", ["truncate", "random"])
def test_damaged_weights_are_named(files, tmp_path, capsys, damage):
    gen = copy_of(files / "gen", tmp_path)
    weights = gen / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncate" else np.random.bytes(len(data)))
    err = fails(capsys, "sample", gen, "--tokenizer", files / "tok", "--out", tmp_path / "s", "--num-samples", 5)
    assert f"{weights} is not a readable safetensors file" in err
    tok = copy_of(files / "tok", tmp_path, "tok")
    (tok / "model.safetensors").write_bytes(b"\x00" * 64)
    err = fails(capsys, "sample", files / "gen", "--tokenizer", tok, "--out", tmp_path / "s", "--num-samples", 5)
    assert f"{tok / 'model.safetensors'} is not a readable safetensors file" in err


def test_folders_of_the_wrong_kind_and_broken_configs(files, tmp_path, capsys):
    err = fails(capsys, "sample", files / "gen", "--tokenizer", files / "gen", "--out", tmp_path / "s", "--num-samples", 5)
    assert f"config {files / 'gen' / 'config.json'}: Key" in err and "ConvVQConfig" in err
    err = fails(capsys, "sample", files / "tok", "--tokenizer", files / "tok", "--out", tmp_path / "s", "--num-samples", 5)
    assert f"config {files / 'tok' / 'config.json'}: Key" in err and "GeneratorConfig" in err
    gen = copy_of(files / "gen", tmp_path)
    (gen / "config.json").write_text('{"width": 64,')
    assert f"config {gen / 'config.json'} is not valid YAML/JSON" in fails(
        capsys, "sample", gen, "--tokenizer", files / "tok", "--out", tmp_path / "s", "--num-samples", 5)
    (gen / "config.json").write_text(json.dumps({**json.loads((files / "gen" / "config.json").read_text()), "wings": 2}))
    assert "Key 'wings' not in 'GeneratorConfig'" in fails(
        capsys, "sample", gen, "--tokenizer", files / "tok", "--out", tmp_path / "s", "--num-samples", 5)


def test_bad_sample_counts_leave_nothing_behind(files, tmp_path, capsys):
    for count in (0, -5):
        assert "num_samples must be >= 1" in fails(capsys, "sample", files / "gen", "--tokenizer", files / "tok",
                                                   "--out", tmp_path / "s", "--num-samples", count)
    assert not (tmp_path / "s").exists()


def test_truncated_store_arrays_are_named(files, tmp_path, capsys):
    for name in ("codes.npy", "labels.npy"):
        store = copy_of(files / "store", tmp_path, name)
        (store / name).write_bytes((store / name).read_bytes()[:100])
        assert f"{store / name} cannot be read" in fails(
            capsys, "train", "configs/fmnist/demo.yaml", f"store={store}", f"tokenizer={files / 'patch'}",
            f"out_dir={tmp_path / 'run'}")


@pytest.mark.parametrize("array, value, message", [
    ("codes", 16, "holds code 16, beyond the 16 codes"), ("labels", 3, "outside the 3 classes"),
])
def test_store_data_out_of_range_is_refused(files, tmp_path, capsys, array, value, message):
    store = copy_of(files / "store", tmp_path)
    data = np.load(store / f"{array}.npy", mmap_mode="r+")
    data[0] = value  # a code the tokenizer never makes / the null class as a label
    data.flush()
    del data
    err = fails(capsys, "train", "configs/fmnist/demo.yaml", f"store={store}", f"tokenizer={files / 'patch'}",
                f"out_dir={tmp_path / 'run'}", "generator.codebook_size=16", "generator.num_classes=3",
                "generator.num_tokens=4", "generator.align.code_dim=8")
    assert message in err


def test_a_batch_larger_than_the_store_leaves_nothing_behind(files, tmp_path, capsys):
    assert "batch_size 64 exceeds the 16 items" in fails(
        capsys, "train", "configs/fmnist/demo.yaml", f"store={files / 'store'}", f"tokenizer={files / 'patch'}",
        f"out_dir={tmp_path / 'run'}", "generator.codebook_size=16", "generator.num_classes=3",
        "generator.num_tokens=4", "generator.align.code_dim=8")
    assert not (tmp_path / "run").exists()


def test_a_truncated_train_state_is_named(files, tmp_path, capsys):
    args = ["train", "configs/fmnist/demo.yaml", f"store={files / 'store'}", f"tokenizer={files / 'patch'}",
            f"out_dir={tmp_path / 'run'}", "generator.codebook_size=16", "generator.num_classes=3",
            "generator.num_tokens=4", "generator.align.code_dim=8", "steps=2", "threads=1", "batch_size=8",
            "samples_per_class=0"]
    main(args)
    capsys.readouterr()
    state = tmp_path / "run" / "checkpoint" / "train_state.pt"
    state.write_bytes(state.read_bytes()[:200])
    assert f"{state} cannot be read as tensors without running pickled code" in fails(capsys, *args, "--resume")


def test_reference_folder_of_mixed_sizes(tmp_path, capsys):
    from PIL import Image

    (tmp_path / "ref").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "ref" / "a.png")
    Image.new("RGB", (9, 8)).save(tmp_path / "ref" / "b.png")
    from rear.evaluation.evaluate import load_images

    with pytest.raises(ValueError, match=r"b.png is 9x8 but .*a.png is 8x8"):
        load_images(tmp_path / "ref")


def test_existing_eval_outputs_are_not_replaced(tmp_path, capsys):
    (tmp_path / "c").mkdir()
    assert "pass --overwrite" in fails(capsys, "eval", "train-classifier", "--out", tmp_path / "c")
    (tmp_path / "stats.npz").write_bytes(b"keep")
    assert "pass --overwrite" in fails(capsys, "eval", "stats", "fashion-mnist:test", "--classifier", tmp_path / "c",
                                       "--out", tmp_path / "stats.npz")
    assert (tmp_path / "stats.npz").read_bytes() == b"keep"
