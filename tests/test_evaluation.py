"""Sampling to disk, scoring, the domain classifier and consistency diagnostics (tiny models)."""
import json

import numpy as np
import pytest
from PIL import Image
import torch

from conftest import PatchTokenizer, random_generator
from rear.config import ClassifierConfig, SampleConfig
from rear.evaluation import diagnose
from rear.evaluation.classifier import Classifier, load_classifier, train_classifier
from rear.evaluation.evaluate import load_images, reference_statistics, score, to_classifier_input
from rear.evaluation.samples import ARCHIVE, SETTINGS, png_path, write_samples

SAMPLE = SampleConfig(cfg_scale=2.0, cfg_power=1.0)


def tiny_pair():
    """A generator over the PatchTokenizer's 16 codes and 2x2 grid, 5 classes."""
    return random_generator(codebook_size=16, num_classes=5, num_tokens=4), PatchTokenizer()


def test_samples_are_class_balanced_with_adm_layout(tmp_path):
    model, tokenizer = tiny_pair()
    path = write_samples(model, tokenizer, tmp_path, 20, SAMPLE, batch_size=6, progress=False)
    with np.load(path) as data:
        images, labels = data["arr_0"], data["labels"]
    assert images.shape == (20, 8, 8, 3) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [4] * 5
    settings = json.loads((tmp_path / SETTINGS).read_text())
    assert settings["sample"]["cfg_scale"] == 2.0 and settings["num_samples"] == 20
    grid = np.asarray(Image.open(tmp_path / "grid.png"))  # one row per class, 4 samples each, 2 px padding
    assert grid.shape[:2] == (5 * 10 + 2, 4 * 10 + 2)
    assert (grid[2:10, 12:20] == images[5][..., 0]).all()  # row 0, column 1: the second sample of class 0


def test_resumed_sampling_writes_the_same_files(tmp_path):
    model, tokenizer = tiny_pair()
    write_samples(model, tokenizer, tmp_path / "a", 20, SAMPLE, batch_size=6, progress=False)
    write_samples(model, tokenizer, tmp_path / "b", 20, SAMPLE, batch_size=6, progress=False)
    for i in (0, 7, 19):  # simulate a killed run: some files missing
        png_path(tmp_path / "b", i).unlink()
    (tmp_path / "b" / ARCHIVE).unlink()
    write_samples(model, tokenizer, tmp_path / "b", 20, SAMPLE, batch_size=6, progress=False)
    for i in range(20):
        assert png_path(tmp_path / "a", i).read_bytes() == png_path(tmp_path / "b", i).read_bytes()
    assert np.array_equal(load_images(tmp_path / "a" / ARCHIVE)[0], load_images(tmp_path / "b" / ARCHIVE)[0])


def test_any_count_is_as_balanced_as_it_can_be_and_changed_settings_are_refused(tmp_path):
    model, tokenizer = tiny_pair()
    write_samples(model, tokenizer, tmp_path / "uneven", 12, SAMPLE, progress=False)  # 5 classes: 3, 3, 2, 2, 2
    images, labels = load_images(tmp_path / "uneven" / ARCHIVE)
    assert len(images) == 12 and np.bincount(labels).tolist() == [3, 3, 2, 2, 2]
    assert json.loads((tmp_path / "uneven" / SETTINGS).read_text())["num_samples"] == 12
    write_samples(model, tokenizer, tmp_path, 10, SAMPLE, progress=False)
    with pytest.raises(ValueError, match=r"other sample.cfg_scale \(2.0 -> 3.0\)"):
        write_samples(model, tokenizer, tmp_path, 10, SampleConfig(cfg_scale=3.0), progress=False)


def test_samples_of_changed_weights_are_never_reused(tmp_path):
    model, tokenizer = tiny_pair()
    write_samples(model, tokenizer, tmp_path, 10, SAMPLE, batch_size=5, progress=False)
    old = load_images(tmp_path / ARCHIVE)[0]
    png_path(tmp_path, 7).unlink()  # a half-finished folder
    with torch.no_grad():  # the same checkpoint path after more training
        model.lm_head.weight.normal_(0, 1.0)
    with pytest.raises(ValueError, match="holds samples of other generator weights \\("):
        write_samples(model, tokenizer, tmp_path, 10, SAMPLE, batch_size=5, progress=False)
    write_samples(model, tokenizer, tmp_path, 10, SAMPLE, batch_size=5, progress=False, overwrite=True)
    fresh = tmp_path.parent / "fresh"
    write_samples(model, tokenizer, fresh, 10, SAMPLE, batch_size=5, progress=False)
    new = load_images(tmp_path / ARCHIVE)[0]
    assert np.array_equal(new, load_images(fresh / ARCHIVE)[0]) and not np.array_equal(new, old)


def test_empty_sample_folder_and_missing_files(tmp_path):
    with pytest.raises(ValueError, match="holds no images"):
        load_images(tmp_path)
    with pytest.raises(FileNotFoundError, match="neither an .npz"):
        load_images(tmp_path / "none.npz.txt")
    with pytest.raises(FileNotFoundError, match="rear eval train-classifier"):
        load_classifier(tmp_path)


def test_reference_of_another_image_size_is_refused():
    classifier = Classifier(ClassifierConfig(image_size=16, widths=[8, 8]))
    with pytest.raises(ValueError, match="classifier takes 16x16"):
        to_classifier_input(np.zeros((4, 32, 32, 3), np.uint8), classifier)


def test_score_of_a_set_against_itself():
    torch.manual_seed(0)
    classifier = Classifier(ClassifierConfig(image_size=16, widths=[8, 16], feature_dim=32, num_classes=4))
    images = (np.random.default_rng(0).random((60, 16, 16, 3)) * 255).astype(np.uint8)
    features = classifier.embed(to_classifier_input(images, classifier))
    labels = features["probs"].argmax(1)
    metrics = score(features, reference_statistics(features), labels)
    assert abs(metrics["fid"]) < 1e-6 and abs(metrics["sfid"]) < 1e-6
    assert metrics["precision"] == 1.0 and metrics["recall"] == 1.0 and metrics["class_accuracy"] == 1.0
    assert abs(metrics["kid"]) < 2 * metrics["kid_se"] and metrics["num_reference"] == 60  # a set against itself
    # 60 images in 32 dims: covariance full rank, but a small reference for precision/recall
    assert len(metrics["warnings"]) == 1 and "k=3 nearest neighbours among 60" in metrics["warnings"][0]


def test_sets_smaller_than_the_feature_dimension_are_named():
    from rear.evaluation.evaluate import small_set_warnings

    singular, coarse = small_set_warnings(180, 1000, 256)
    assert "the reference holds 180 images, not more than the 256 feature dimensions" in singular
    assert "trust KID" in singular and "180 reference images" in coarse
    assert small_set_warnings(10_000, 10_000, 2048) == []


def test_class_accuracy_near_chance_is_named():
    from rear.evaluation.evaluate import chance_warning, reference_statistics, score

    assert "38.3% lies nearer chance (33.3% for 3 classes)" in chance_warning(0.383, 3)
    assert chance_warning(0.67, 3) is None and chance_warning(0.54, 10) is not None and chance_warning(0.56, 10) is None
    # score() carries it: 40 samples of 4 classes whose labels the classifier gets right 1 time in 4
    classifier = Classifier(ClassifierConfig(image_size=16, widths=[8, 16], feature_dim=32, num_classes=4))
    images = (np.random.default_rng(1).random((40, 16, 16, 3)) * 255).astype(np.uint8)
    features = classifier.embed(to_classifier_input(images, classifier))
    wrong = (features["probs"].argmax(1) + np.arange(40) % 4) % 4  # right exactly when i % 4 == 0
    metrics = score(features, reference_statistics(features), wrong)
    assert metrics["class_accuracy"] == 0.25 and any("nearer chance (25.0% for 4 classes)" in w for w in metrics["warnings"])
    assert not any("nearer chance" in w for w in score(features, reference_statistics(features),
                                                        features["probs"].argmax(1))["warnings"])


def test_classifier_learns_a_separable_task(tmp_path):
    """Two classes: bright top half vs bright bottom half (flip augmentation keeps the label)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(512, 1, 16, 16, generator=g) * 0.3
    y = torch.arange(512) % 2
    x[y == 0, :, :8] += 0.6
    x[y == 1, :, 8:] += 0.6
    config = ClassifierConfig(image_size=16, num_classes=2, widths=[8, 16], feature_dim=32, epochs=2, min_steps=0, batch_size=64)
    metrics = train_classifier(config, (x[:384], y[:384]), (x[384:], y[384:]), tmp_path / "clf", progress=False)
    assert metrics["test_accuracy"] > 0.95
    reloaded = load_classifier(tmp_path / "clf")
    assert np.allclose(reloaded.embed(x[:5])["probs"], Classifier.embed(reloaded, x[:5])["probs"])


def test_diagnostics_on_a_tiny_model():
    model, tokenizer = tiny_pair()
    tokens, labels = torch.randint(0, 16, (32, 4)), torch.arange(32) % 5
    consistency = diagnose.retokenization_consistency(model, tokenizer, torch.arange(10) % 5, SAMPLE)
    assert 0.0 <= consistency <= 1.0
    clean = diagnose.token_accuracy(model, tokens, labels, 0.0)
    assert clean == (model.logits(tokens, labels).argmax(-1) == tokens).float().mean().item()
    assert 0.0 <= diagnose.token_accuracy(model, tokens, labels, 1.0) <= 1.0
    model = random_generator(codebook_size=16, num_classes=5, num_tokens=4, align={"code_dim": 8, "decode_layer": 1})
    cosine = diagnose.decode_cosine(model, tokens, labels, tokenizer.quantize.embedding.weight)
    assert -1.0 <= cosine <= 1.0


def test_alignment_information_against_direct_sums():
    """The three cosines to the next token's code, recomputed term by term; no head: None."""
    model = random_generator(codebook_size=16, num_classes=5, num_tokens=4, align={"code_dim": 8, "decode_layer": 1})
    codebook = torch.randn(16, 8, generator=torch.Generator().manual_seed(1))
    tokens, labels = torch.randint(0, 16, (6, 4), generator=torch.Generator().manual_seed(2)), torch.arange(6) % 5
    info = diagnose.alignment_information(model, tokens, labels, codebook)
    unit = codebook / codebook.norm(dim=-1, keepdim=True)
    with torch.no_grad():
        p = model.logits(tokens, labels).softmax(-1)  # [B, N, K]
    implied, constant = [], []
    for b in range(6):
        for i in range(4):
            target = unit[tokens[b, i]]
            direction = sum(p[b, i, k] * unit[k] for k in range(16))
            implied.append(float(direction @ target / direction.norm()))
            mean = unit[tokens[:, i]].mean(0)
            constant.append(float(mean @ target / mean.norm()))
    assert info["implied_cosine"] == pytest.approx(np.mean(implied), abs=1e-5)
    assert info["constant_cosine"] == pytest.approx(np.mean(constant), abs=1e-5)
    assert info["decode_head_cosine"] == pytest.approx(diagnose.decode_cosine(model, tokens, labels, codebook))
    assert info["code_dim"] == 8
    plain = random_generator(codebook_size=16, num_classes=5, num_tokens=4, align={"encode": False, "decode": False})
    assert diagnose.alignment_information(plain, tokens, labels, codebook)["decode_head_cosine"] is None


def test_samples_know_their_tokenizer_by_content_not_by_path(tmp_path, monkeypatch):
    """A tokenizer retrained at the same path makes other samples (refused); the same tokenizer under
    another spelling of its path does not (resumed)."""
    from conftest import tiny_conv_vq
    from rear.cli import main

    monkeypatch.chdir(tmp_path)
    random_generator(codebook_size=16, num_classes=2, num_tokens=4).save_pretrained(tmp_path / "g")
    tiny_conv_vq(seed=0).save_pretrained(tmp_path / "tok")
    main(["sample", "g", "--tokenizer", "tok", "--out", "s", "--num-samples", "4"])
    main(["sample", "./g", "--tokenizer", "./tok/", "--out", "s", "--num-samples", "4"])  # the same inputs: resumes
    assert json.loads((tmp_path / "s" / SETTINGS).read_text())["provenance"]["tokenizer"] == "./tok/"
    tiny_conv_vq(seed=1).save_pretrained(tmp_path / "tok")  # retrained in place
    with pytest.raises(SystemExit):
        main(["sample", "g", "--tokenizer", "tok", "--out", "s", "--num-samples", "4"])


def test_the_ceiling_says_when_reconstructions_lose_the_class(tmp_path):
    """Dark against bright images, a classifier that tells them apart, and two tokenizers: one that gives the
    images back (the class survives) and one that gives mid-gray for all (it does not)."""
    from rear.evaluation.ceiling import ceiling_warning, tokenizer_ceiling

    torch.manual_seed(0)
    images = torch.cat([torch.full((32, 1, 8, 8), 0.1), torch.full((32, 1, 8, 8), 0.9)]) + 0.05 * torch.rand(64, 1, 8, 8)
    labels = torch.arange(64) // 32
    config = ClassifierConfig(image_size=8, num_classes=2, widths=[8, 16], feature_dim=16, epochs=20, min_steps=0,
                              batch_size=16)
    train_classifier(config, (images, labels), (images, labels), tmp_path / "clf", progress=False)
    classifier = load_classifier(tmp_path / "clf")
    class Stub(torch.nn.Module):  # encode -> decode: the images as they are, or mid-gray for every image
        def __init__(self, keeps: bool) -> None:
            super().__init__()
            self.keeps, self.weight = keeps, torch.nn.Parameter(torch.zeros(1))

        def encode(self, x):
            return x

        def decode(self, x):
            return x if self.keeps else torch.full_like(x, 0.5)

    keeps, loses = Stub(True), Stub(False)
    kept, lost = (tokenizer_ceiling(t, classifier, images, labels) for t in (keeps, loses))
    assert {"images", "fid", "kid", "kid_se", "accuracy_originals", "accuracy_reconstructions"} <= set(kept)
    assert kept["accuracy_originals"] == 1.0 and kept["accuracy_reconstructions"] == 1.0 and ceiling_warning(kept) is None
    assert lost["accuracy_reconstructions"] == 0.5 and lost["kid"] > kept["kid"]
    warning = ceiling_warning(lost)
    assert "loses what the images are about" in warning and "50.0% of its reconstructions" in warning and "\n" not in warning
    assert ceiling_warning({"images": 3, "fid": 1.0, "kid": 0.0, "kid_se": 0.0}) is None  # no labels: nothing to say
