"""Your own images end to end through the `rear` command: grayscale and RGB class folders."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rear.cli import main
from rear.data.folder import heldout_indices, ImageFolder
from rear.data.store import TokenStore


def make_folder(root, rgb, classes=3, per_class=20, seed=0):
    """classes x per_class images of 20x20: a class-specific bright square on noise."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            image = rng.integers(0, 60, (20, 20, 3 if rgb else 1), dtype=np.uint8)
            image[2 + 5 * c : 8 + 5 * c, 4:16] = 255 if not rgb else (255, 60 * c, 255 - 60 * c)
            Image.fromarray(image if rgb else image[..., 0]).save(root / f"class{c}" / f"img{i:03d}.png")
    return root


def test_heldout_split_is_fixed_by_names_and_balanced(tmp_path):
    folder = make_folder(tmp_path / "a", rgb=False, per_class=20)
    files = ImageFolder(folder, 8, channels=1).files
    heldout = heldout_indices(files, folder)
    assert len(heldout) == 6 and sorted(np.bincount([files[i][1] for i in heldout])) == [2, 2, 2]
    moved = tmp_path / "b"
    folder.rename(moved)  # the split depends on names inside the folder, not on where it lies
    assert heldout_indices(ImageFolder(moved, 8, channels=1).files, moved) == heldout
    assert len(ImageFolder(moved, 8, 1, part="train")) == 54 and len(ImageFolder(moved, 8, 1, part="heldout")) == 6


@pytest.mark.parametrize("rgb", [False, True], ids=["grayscale", "rgb"])
def test_folder_to_fid_through_the_command_line(tmp_path, capsys, rgb):
    data = make_folder(tmp_path / "images", rgb)
    tok_yaml = tmp_path / "tok.yaml"
    tok_yaml.write_text("steps: 4\nbatch_size: 8\neval_size: 100\nmodel: {image_size: 16, codebook_size: 16, code_dim: 4, "
                        "widths: [8, 8, 16], res_blocks: [0, 0, 1], groups: 4}\n")
    main(["tokenizer", "train", str(tok_yaml), "--source", str(data), f"out={tmp_path / 'tok'}"])
    out = capsys.readouterr().out
    assert f"channels: {3 if rgb else 1} ({'RGB' if rgb else 'grayscale'})" in out and "54 training images, 6 held out" in out
    for part in ("train", "heldout"):
        main(["pretokenize", f"{data}:{part}", "--tokenizer", str(tmp_path / "tok"), "--out", str(tmp_path / part), "--no-flip"])
    stores = {part: TokenStore(tmp_path / part) for part in ("train", "heldout")}
    assert (len(stores["train"]), len(stores["heldout"])) == (54, 6)
    assert stores["heldout"].manifest["source"].endswith(":heldout")
    main(["eval", "train-classifier", "--source", str(data), "--out", str(tmp_path / "clf"), "epochs=2", "min_steps=0", "batch_size=8",
          "image_size=16", "widths=[8,16]", "feature_dim=16"])
    source = json.loads((tmp_path / "clf" / "metrics.json").read_text())["source"]
    assert source["channels"] == (3 if rgb else 1) and source["class_names"] == ["class0", "class1", "class2"]
    assert source["test"] == f"{data}:heldout"
    gen_yaml = tmp_path / "gen.yaml"
    gen_yaml.write_text(
        f"store: {tmp_path / 'train'}\ntokenizer: {tmp_path / 'tok'}\nout_dir: {tmp_path / 'gen'}\n"
        "generator: {codebook_size: 16, num_classes: 3, num_tokens: 16, width: 32, depth: 2, heads: 2, "
        "extra_position_rows: 2, extra_step_rows: 2, align: {decode_layer: 1, projection_dim: 16, code_dim: 4}}\n"
        "noise: {anneal_end: 3}\noptim: {warmup_steps: 1}\nsample: {cfg_scale: 2.0}\nsteps: 4\nbatch_size: 8\n"
        "grad_accumulation: 1\nsamples_per_class: 0\nthreads: 1\n")
    main(["train", str(gen_yaml)])
    main(["sample", str(tmp_path / "gen" / "checkpoint"), "--tokenizer", str(tmp_path / "tok"), "--out",
          str(tmp_path / "samples"), "--num-samples", "12"])
    assert (tmp_path / "samples" / "grid.png").is_file()
    capsys.readouterr()
    main(["eval", "score", str(tmp_path / "samples" / "samples.npz"), "--reference", f"{data}:heldout",
          "--classifier", str(tmp_path / "clf")])
    metrics = json.loads((tmp_path / "samples" / "metrics.json").read_text())
    assert metrics["num_samples"] == 12 and 0 <= metrics["class_accuracy"] <= 1 and np.isfinite(metrics["fid"])
    main(["diagnose", str(tmp_path / "gen" / "checkpoint"), "--tokenizer", str(tmp_path / "tok"), "--heldout",
          str(tmp_path / "heldout"), "--classifier", str(tmp_path / "clf"), "--count", "6", "--samples", "6",
          "--out", str(tmp_path / "diagnose.json")])
    found = json.loads((tmp_path / "diagnose.json").read_text())
    assert found["heldout"]["per_class"] == [2, 2, 2] and all(not str(v).startswith("failed") for v in found.values())
    # the ceiling is computed on the folder's own held-out images, in the tokenizer's channels
    from rear.data.sources import open_source, read_all
    from rear.evaluation.classifier import load_classifier
    from rear.evaluation.ceiling import tokenizer_ceiling
    from rear.tokenizer.load import load_tokenizer

    tokenizer = load_tokenizer(tmp_path / "tok")
    images, labels = read_all(open_source(f"{data}:heldout", tokenizer.channels), 16)
    direct = tokenizer_ceiling(tokenizer, load_classifier(tmp_path / "clf"), images, labels)
    assert found["tokenizer_ceiling"] == pytest.approx(direct, rel=1e-6, abs=1e-9)
    assert {"accuracy_originals", "accuracy_reconstructions", "kid", "kid_se"} <= set(direct) and direct["images"] == 6
    # eval score --tokenizer reads the reference once for both: the same scores as without it, and that ceiling
    main(["eval", "score", str(tmp_path / "samples" / "samples.npz"), "--reference", f"{data}:heldout",
          "--classifier", str(tmp_path / "clf"), "--tokenizer", str(tmp_path / "tok"), "--out", str(tmp_path / "with.json")])
    both = json.loads((tmp_path / "with.json").read_text())
    assert {k: both[k] for k in ("fid", "kid", "precision", "recall")} == {k: metrics[k] for k in ("fid", "kid", "precision", "recall")}
    assert both["ceiling"].pop("source") == f"{data}:heldout"
    assert both["ceiling"] == pytest.approx(direct, rel=1e-6, abs=1e-9)
    # a held-out file broken after pretokenizing would shift every later item: the ceiling says so, the rest runs
    from rear.data.folder import ImageFolder, heldout_indices

    files = ImageFolder(data, 16, channels=1).files
    first = files[sorted(heldout_indices(files, data))[0]][0]
    Path(first).write_bytes(b"not a png")
    main(["diagnose", str(tmp_path / "gen" / "checkpoint"), "--tokenizer", str(tmp_path / "tok"), "--heldout",
          str(tmp_path / "heldout"), "--classifier", str(tmp_path / "clf"), "--count", "6", "--samples", "6",
          "--out", str(tmp_path / "diagnose.json")])
    found = json.loads((tmp_path / "diagnose.json").read_text())
    assert "no longer matches the store" in found["tokenizer_ceiling"] and "pretokenize it again" in found["tokenizer_ceiling"]
    assert isinstance(found["correct_token_ratio_clean"], float)


def test_balanced_items_cover_every_class():
    from rear.evaluation.diagnose import balanced_items

    labels = np.repeat(np.arange(10), 100)  # a class-sorted store: the first 1000 would be classes 0-9 only by luck
    items = balanced_items(labels, 250, seed=0)
    assert len(items) == 250 and np.bincount(labels[items]).tolist() == [25] * 10
    assert (items == balanced_items(labels, 250, seed=0)).all() and not (items == balanced_items(labels, 250, 1)).all()


def test_a_classifier_of_another_domain_is_refused(tmp_path, capsys):
    data = make_folder(tmp_path / "images", rgb=False)
    main(["eval", "train-classifier", "--source", str(data), "--out", str(tmp_path / "clf"), "epochs=1", "min_steps=0", "batch_size=8",
          "image_size=16", "widths=[8,16]", "feature_dim=16"])
    colour = np.zeros((6, 16, 16, 3), np.uint8)
    colour[..., 0] = 200
    np.savez(tmp_path / "colour.npz", arr_0=colour, labels=np.arange(6) % 3)
    ten = np.zeros((10, 16, 16, 3), np.uint8)
    np.savez(tmp_path / "ten.npz", arr_0=ten, labels=np.arange(10))
    for samples, message in (("colour.npz", "samples are in colour but the classifier was trained on grayscale"),
                             ("ten.npz", "labelled with 10 classes but the classifier knows 3")):
        with pytest.raises(SystemExit):
            main(["eval", "score", str(tmp_path / samples), "--reference", f"{data}:heldout", "--classifier",
                  str(tmp_path / "clf")])
        assert message in capsys.readouterr().err


def test_degenerate_folders_are_refused(tmp_path, capsys):
    """An empty class folder, or a folder (or class) of which no image can be read, makes no store."""
    from PIL import Image

    from conftest import tiny_conv_vq
    from rear.cli import main

    tiny_conv_vq().save_pretrained(tmp_path / "tok")
    root = tmp_path / "images"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
    for i in range(3):
        Image.new("L", (8, 8), 40 * i).save(root / "a" / f"{i}.png")
    (root / "empty").mkdir()

    def fails(*argv):
        with pytest.raises(SystemExit) as exit:
            main([str(a) for a in argv])
        assert exit.value.code == 2
        return capsys.readouterr().err

    pretokenize = ("pretokenize", root, "--tokenizer", tmp_path / "tok", "--out", tmp_path / "store", "--no-flip")
    assert "class folder(s) b, empty hold no image files" in fails(*pretokenize)
    (root / "empty").rmdir()
    for i in range(2):
        (root / "b" / f"{i}.png").write_bytes(b"not a png")
    assert "no readable image of class(es) b" in fails(*pretokenize)
    assert not (tmp_path / "store").exists()
    for i in range(3):
        (root / "a" / f"{i}.png").write_bytes(b"broken")
    assert "no readable image at all" in fails(*pretokenize)
    assert not (tmp_path / "store").exists()
