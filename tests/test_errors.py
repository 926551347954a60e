"""Every mistake is one line on stderr, exit 2, naming the file or key, and nothing is lost."""
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from conftest import random_generator, tiny_conv_vq
from rear.checkpoint import save_generator
from rear.cli import main
from rear.config import ConvVQConfig
from rear.data.sources import Source
from rear.data.store import pretokenize
from rear.tokenizer.conv_vq import ConvVQTokenizer


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny generator folder (32 codes, 5 classes, 16 tokens), a conv VQ tokenizer that fits it, a store."""
    root = tmp_path_factory.mktemp("files")
    save_generator(random_generator(), root / "gen")
    ConvVQTokenizer(ConvVQConfig(image_size=16, codebook_size=32, code_dim=8, widths=[8, 8, 8],
                                 res_blocks=[0, 0, 0], groups=4)).save_pretrained(root / "tok")
    # 8x8 images -> 2x2 tokens of 16 codes, 8 dims
    patch = tiny_conv_vq()
    patch.save_pretrained(root / "patch")
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
    assert "steps must lie in [1, inf), got -5" in fails(capsys, "train", "configs/fmnist/demo.yaml", "store=s", "tokenizer=t",
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
        assert f"--num-samples: must be at least 1, got {count}" in fails(
            capsys, "sample", files / "gen", "--tokenizer", files / "tok", "--out", tmp_path / "s", "--num-samples", count)
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


def test_broken_weights_are_refused_naming_the_file_and_tensor(tmp_path, capsys):
    """NaN / Inf weights and integer weights where the model holds floats fail to load, in one line."""
    from safetensors.torch import load_file

    from conftest import random_generator, tiny_conv_vq

    random_generator(codebook_size=16, num_classes=2, num_tokens=4).save_pretrained(tmp_path / "g")
    tiny_conv_vq().save_pretrained(tmp_path / "tok")
    for folder, damage, expected in (
            ("tok", lambda t: t.fill_(float("nan")), "NaN or Inf"),
            ("g", lambda t: t.fill_(float("inf")), "NaN or Inf"),
            ("g", lambda t: t.to(torch.int8), "is torch.int8, not floating point")):
        state = load_file(tmp_path / folder / "model.safetensors")
        name = sorted(k for k, v in state.items() if v.dtype.is_floating_point)[0]
        broken = tmp_path / f"broken-{folder}"
        shutil.copytree(tmp_path / folder, broken, dirs_exist_ok=True)
        save_file({**state, name: damage(state[name].clone())}, broken / "model.safetensors")
        command = (["sample", str(broken), "--tokenizer", str(tmp_path / "tok")] if folder == "g" else
                   ["sample", str(tmp_path / "g"), "--tokenizer", str(broken)])
        message = fails(capsys, *command, "--out", tmp_path / "s", "--num-samples", "2")
        assert expected in message and repr(name) in message and "model.safetensors" in message, message
        assert not (tmp_path / "s").exists()


def test_every_sampling_path_checks_the_settings(tmp_path, capsys):
    """One check (SampleConfig.validate) behind the flags, generation_config.json, the API and serve."""
    import json

    from conftest import random_generator
    from rear.config import SampleConfig

    model = random_generator(codebook_size=16, num_classes=2, num_tokens=4)
    model.save_pretrained(tmp_path / "g", SampleConfig(cfg_scale=3.0))
    for flags, expected in ((["--cfg-scale", "-5"], "--cfg-scale must lie in [1, inf), got -5"),
                            (["--cfg-scale", "nan"], "--cfg-scale must be a finite number"),
                            (["--temperature", "1e-300"], "--temperature must lie in [1e-06, inf)"),
                            (["--top-p", "0"], "--top-p must lie in [1e-06, 1]"), (["--top-k", "0"], "--top-k: must be at least 1")):
        assert expected in fails(capsys, "sample", tmp_path / "g", "--tokenizer", "t", "--out", tmp_path / "s",
                                 "--num-samples", "2", *flags)
    generation = tmp_path / "g" / "generation_config.json"
    data = json.loads(generation.read_text())
    data["sample"]["temperature"] = float("inf")
    generation.write_text(json.dumps(data))
    message = fails(capsys, "sample", tmp_path / "g", "--tokenizer", "t", "--out", tmp_path / "s", "--num-samples", "2")
    assert "generation_config.json" in message and "temperature must be a finite number" in message
    with pytest.raises(ValueError, match="cfg_power must lie in"):
        model.generate(torch.tensor([0]), cfg_scale=2.0, cfg_power=0.0)
    with pytest.raises(ValueError, match="top_p must lie in"):
        SampleConfig(top_p=1e-300).validate()


def test_numeric_settings_are_bounded_before_any_work(tmp_path, capsys):
    base = ("train", "configs/fmnist/demo.yaml", "store=s", "tokenizer=t", f"out_dir={tmp_path / 'o'}")
    for override, expected in (("optim.grad_clip=0", "optim.grad_clip must lie in (0, inf), got 0"),
                               ("optim.learning_rate=nan", "optim.learning_rate must be a finite number"),
                               ("optim.beta2=1.5", "optim.beta2 must lie in [0, 1), got 1.5"),
                               ("generator.dropout=1.5", "generator.dropout must lie in [0, 1)"),
                               ("optim.warmup_steps=-1", "optim.warmup_steps must lie in [0, inf)"),
                               ("noise.anneal_end=-3", "noise.anneal_end must lie in [0, inf)"),
                               ("batch_size=0", "batch_size must lie in [1, inf)")):
        assert expected in fails(capsys, *base, override)
    assert not (tmp_path / "o").exists()
    assert "epochs must lie in [1, inf)" in fails(capsys, "eval", "train-classifier", "epochs=0", "--out", tmp_path / "c")
    assert "model.code_dim must lie in [1, inf)" in fails(
        capsys, "tokenizer", "train", "configs/fmnist/tokenizer.yaml", "model.code_dim=0", "out=" + str(tmp_path / "t"))


def test_malformed_inputs_get_one_line_not_a_traceback(tmp_path, capsys):
    from conftest import random_generator, tiny_conv_vq

    random_generator(codebook_size=16, num_classes=2, num_tokens=4).save_pretrained(tmp_path / "g")
    tiny_conv_vq().save_pretrained(tmp_path / "tok")
    (tmp_path / "zero.bin").write_bytes(b"")
    assert "zero.bin cannot be read as tensors" in fails(
        capsys, "sample", tmp_path / "g", "--tokenizer", tmp_path / "zero.bin", "--out", tmp_path / "s", "--num-samples", "2")
    assert "zero.bin cannot be read as tensors" in fails(capsys, "convert", tmp_path / "zero.bin", tmp_path / "c")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    assert "the top level must be a mapping of settings" in fails(capsys, "train", tmp_path / "list.yaml")
    from rear.config import ClassifierConfig
    from rear.evaluation.classifier import train_classifier

    data = (torch.rand(8, 1, 8, 8), torch.arange(8) % 2)
    train_classifier(ClassifierConfig(image_size=8, num_classes=2, widths=[4, 8], feature_dim=8, epochs=1, min_steps=0, batch_size=4),
                     data, data, tmp_path / "c", progress=False)
    samples = tmp_path / "samples.npz"
    np.savez(samples, arr_0=np.zeros((4, 8, 8, 3), np.uint8))
    samples.write_bytes(samples.read_bytes()[:100])  # truncated
    assert "samples.npz is not a readable .npz" in fails(
        capsys, "eval", "score", samples, "--reference", samples, "--classifier", tmp_path / "c")
    np.savez(samples, arr_0=np.zeros((0, 8, 8, 3), np.uint8))
    assert "holds no images" in fails(capsys, "eval", "score", samples, "--reference", samples, "--classifier",
                                      tmp_path / "c")
    for size, expected in (("0", "must be at least 1, got 0"), ("-1", "must be at least 1, got -1"),
                           ("x", "must be a whole number, got 'x'")):
        assert f"argument --batch-size: {expected}" in fails(
            capsys, "sample", tmp_path / "g", "--tokenizer", tmp_path / "tok", "--out", tmp_path / "s",
            "--num-samples", "2", "--batch-size", size)
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("content", ['{"units": {}}', "[1, 2]", '{"config": {}, "units": [1]}',
                                     '{"config": {}, "units": {"tokenizer": 3}}', "{not json"])
def test_a_tampered_ledger_is_named_not_a_traceback(tmp_path, capsys, content):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "results.json").write_text(content)
    message = fails(capsys, "study", "configs/fmnist/study.yaml", f"results={tmp_path / 'results'}",
                    f"out={tmp_path / 'out'}")
    assert "results.json" in message and ("not a study ledger" in message or "is not JSON" in message), message


def test_a_second_process_on_the_same_output_is_refused_naming_the_first(tmp_path, capsys):
    """The lock beside an output folder: the second writer stops at once; a finished or killed one frees it."""
    from rear.lock import hold, lock_path

    from conftest import random_generator, tiny_conv_vq

    random_generator(codebook_size=16, num_classes=2, num_tokens=4).save_pretrained(tmp_path / "g")
    tiny_conv_vq().save_pretrained(tmp_path / "tok")
    sample = ("sample", tmp_path / "g", "--tokenizer", tmp_path / "tok", "--out", tmp_path / "s", "--num-samples", "2")
    with hold(tmp_path / "s"):
        message = fails(capsys, *sample)
        assert "s is in use by process" in message and "rear " in message
        assert "is in use by process" in fails(capsys, "train", "configs/fmnist/demo.yaml", "store=x", "tokenizer=y",
                                               f"out_dir={tmp_path / 's'}")
        assert "is in use by process" in fails(capsys, "study", "configs/fmnist/study.yaml",
                                               f"results={tmp_path / 's'}", f"out={tmp_path / 'o'}")
    assert not (tmp_path / "s").exists() and lock_path(tmp_path / "s").is_file()  # refused before any output
    main([str(a) for a in sample])  # the lock is free again
    assert (tmp_path / "s" / "samples.npz").is_file()


def test_poor_one_liners_are_plain(tmp_path, capsys):
    """An empty generation_config.json is not announced as the checkpoint's settings; a grayscale [n, H, W]
    npz is grayscale; a classifier training part smaller than a batch names batch_size."""
    import json

    from conftest import random_generator, tiny_conv_vq
    from rear.config import ClassifierConfig
    from rear.evaluation.classifier import train_classifier
    from rear.evaluation.evaluate import load_images

    random_generator(codebook_size=16, num_classes=2, num_tokens=4).save_pretrained(tmp_path / "g")
    tiny_conv_vq().save_pretrained(tmp_path / "tok")
    (tmp_path / "g" / "generation_config.json").write_text("{}")
    main(["sample", str(tmp_path / "g"), "--tokenizer", str(tmp_path / "tok"), "--out", str(tmp_path / "s"),
          "--num-samples", "2"])
    out = capsys.readouterr().out
    assert "default (its generation_config.json sets none)" in out and "the checkpoint's" not in out
    np.savez(tmp_path / "gray.npz", arr_0=np.full((4, 8, 8), 7, np.uint8))
    images, _ = load_images(tmp_path / "gray.npz")
    assert images.shape == (4, 8, 8, 3) and (images == 7).all()
    np.savez(tmp_path / "floats.npz", arr_0=np.zeros((4, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="expected uint8"):
        load_images(tmp_path / "floats.npz")
    data = (torch.rand(6, 1, 8, 8), torch.arange(6) % 2)
    with pytest.raises(ValueError, match="holds 6 images, fewer than batch_size=128: pass batch_size=1"):
        train_classifier(ClassifierConfig(image_size=8, num_classes=2, widths=[4, 8], feature_dim=8), data, data,
                         tmp_path / "c", progress=False)
    assert json.loads((tmp_path / "s" / "settings.json").read_text())["sample"]["cfg_scale"] == 15.0


def test_reference_statistics_belong_to_their_extractor(tmp_path, capsys):
    """Statistics saved with one classifier are refused for another (retrained at the same path); statistics of
    another feature size (an Inception reference scored with a classifier) are named, not a broadcast error."""
    from rear.config import ClassifierConfig
    from rear.evaluation.classifier import train_classifier

    config = ClassifierConfig(image_size=8, num_classes=2, widths=[4, 8], feature_dim=8, epochs=1, min_steps=0, batch_size=4)
    data = (torch.rand(8, 1, 8, 8), torch.arange(8) % 2)
    gray = np.random.default_rng(0).integers(0, 256, (6, 8, 8, 1), dtype=np.uint8).repeat(3, -1)
    np.savez(tmp_path / "samples.npz", arr_0=gray, labels=np.arange(6) % 2)
    train_classifier(config, data, data, tmp_path / "c", progress=False)
    main(["eval", "stats", str(tmp_path / "samples.npz"), "--classifier", str(tmp_path / "c"), "--out",
          str(tmp_path / "ref.npz")])
    score = ("eval", "score", tmp_path / "samples.npz", "--reference", tmp_path / "ref.npz", "--classifier", tmp_path / "c")
    main([str(a) for a in score])  # the same classifier: scored
    assert "the covariance is singular" in capsys.readouterr().err  # 6 images in 8 dims: said, not silent
    shutil.rmtree(tmp_path / "c")
    other = (data[0].flip(-1), data[1])
    train_classifier(config, other, other, tmp_path / "c", progress=False)  # another classifier at the same path
    assert "holds statistics of another feature extractor" in fails(capsys, *score)
    with np.load(tmp_path / "ref.npz") as ref:
        wide = {k: ref[k] for k in ref.files if k != "extractor"}
    wide["mu"], wide["sigma"] = np.zeros(2048), np.eye(2048)
    np.savez(tmp_path / "wide.npz", **wide)
    assert "statistics of 2048-dim features, the samples' extractor gives 8-dim" in fails(
        capsys, "eval", "score", tmp_path / "samples.npz", "--reference", tmp_path / "wide.npz", "--classifier", tmp_path / "c")


def test_system_errors_name_the_path_and_what_to_do(tmp_path, capsys):
    """An OSError from the system is not printed as "[Errno N] ..." alone."""
    import errno

    from rear.errors import one_line

    assert one_line(OSError(errno.ENOSPC, "No space left on device")) == (
        "No space left on device; free some space or write elsewhere, then run the command again (finished work is kept)")
    assert one_line(PermissionError(errno.EACCES, "Permission denied", "/x/y")).startswith("Permission denied: /x/y; choose")
    assert one_line(FileNotFoundError("model.safetensors not found")) == "model.safetensors not found"  # ours: as it is
    (tmp_path / "file").write_text("")
    message = fails(capsys, "eval", "stats", "fashion-mnist:test", "--classifier", tmp_path / "c", "--out",
                    tmp_path / "file" / "ref.npz")  # refused before anything is read: the classifier is absent
    assert "Errno" not in message
    np.savez(tmp_path / "s.npz", arr_0=np.zeros((2, 8, 8, 3), np.uint8))
    message = fails(capsys, "eval", "score", tmp_path / "s.npz", "--reference", tmp_path / "s.npz", "--classifier",
                    tmp_path / "file")
    assert "Errno" not in message
