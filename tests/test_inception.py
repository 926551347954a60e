"""FID InceptionV3: layout of pytorch-fid's weight file, loading, preprocessing, feature shapes; no network."""
import urllib.error

import numpy as np
import pytest
import torch

from rear.metrics.inception import WEIGHTS_URL, InceptionFeatures, load_inception


def random_state(model: InceptionFeatures, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in the model's own layout, without BatchNorm counters (a converted TF file has none)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, tensor in model.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        value = torch.randn(tensor.shape, generator=g) * 0.1
        state[name] = value.abs() + 0.5 if name.endswith("running_var") else value
    return state


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("inception") / "weights.pth"
    state = random_state(InceptionFeatures())
    torch.save(state, path)
    return path, state


def test_layout_matches_the_fid_weight_file():
    state = InceptionFeatures().state_dict()
    # 94 conv-BN units x (conv weight, BN weight/bias/mean/var/counter) + fc weight and bias
    assert len(state) == 94 * 6 + 2
    assert state["fc.weight"].shape == (1008, 2048) and state["fc.bias"].shape == (1008,)
    assert state["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
    assert state["Conv2d_1a_3x3.bn.running_mean"].shape == (32,)
    assert state["Mixed_5b.branch1x1.conv.weight"].shape == (64, 192, 1, 1)
    assert state["Mixed_6e.branch7x7dbl_5.conv.weight"].shape == (192, 192, 1, 7)
    assert state["Mixed_7c.branch_pool.conv.weight"].shape == (192, 2048, 1, 1)


def test_parameter_count():
    # torchvision documents 27,161,264 for Inception3 with AuxLogits and 1000 classes. The FID net drops
    # AuxLogits (conv0 768*128 + BN 2*128, conv1 128*768*25 + BN 2*768, fc 768*1000 + 1000 = 3,326,696)
    # and has 1008 classes (+8 * 2048 + 8 = 16,392): 23,850,960.
    expected = 27_161_264 - (768 * 128 + 256 + 128 * 768 * 25 + 1536 + 768 * 1000 + 1000) + 8 * 2049
    assert sum(p.numel() for p in InceptionFeatures().parameters()) == expected == 23_850_960


def test_load_and_embed_gray_images(saved):
    path, state = saved
    model = load_inception(path)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert torch.equal(model.fc.weight, state["fc.weight"])
    seen = {}
    model.Mixed_6d.branch1x1.register_forward_hook(lambda m, i, o: seen.update(branch=o))
    model.Mixed_7c.register_forward_hook(lambda m, i, o: seen.update(last=o))
    images = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    out = model.embed(images, batch_size=1)
    assert {k: v.shape for k, v in out.items()} == {"pool": (2, 2048), "spatial": (2, 7 * 17 * 17), "probs": (2, 1008)}
    assert all(v.dtype == np.float64 and np.isfinite(v).all() for v in out.values())
    np.testing.assert_allclose(out["probs"].sum(1), 1, atol=1e-5)
    # the last batch (image 1): spatial = mixed_6/conv[..., :7] channels-last, pool = mean of Mixed_7c
    np.testing.assert_allclose(out["spatial"][1], seen["branch"][0, :7].permute(1, 2, 0).flatten().numpy(), rtol=1e-6)
    np.testing.assert_allclose(out["pool"][1], seen["last"][0].mean((1, 2)).numpy(), rtol=1e-5, atol=1e-7)


def test_weights_from_the_environment(saved, monkeypatch):
    monkeypatch.setenv("REAR_INCEPTION", str(saved[0]))
    assert torch.equal(load_inception().Mixed_7c.branch_pool.conv.weight, saved[1]["Mixed_7c.branch_pool.conv.weight"])


def test_missing_weights_without_network(tmp_path, monkeypatch):
    monkeypatch.delenv("REAR_INCEPTION", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))

    def offline(url, timeout):
        raise urllib.error.URLError("offline")

    import rear.download

    monkeypatch.setattr(rear.download.urllib.request, "urlopen", offline)
    with pytest.raises(FileNotFoundError, match="REAR_INCEPTION") as error:
        load_inception()
    assert WEIGHTS_URL in str(error.value) and "\n" not in str(error.value)
    assert list((tmp_path / ".cache" / "rear").iterdir()) == []  # no partial file left


def test_downloaded_weights_must_match_the_hash_in_their_name(tmp_path, monkeypatch):
    import io

    import rear.download

    monkeypatch.delenv("REAR_INCEPTION", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(rear.download.urllib.request, "urlopen", lambda url, timeout: io.BytesIO(b"tampered"))
    with pytest.raises(FileNotFoundError, match="SHA-256 .*not 6726825d"):
        load_inception()
    assert list((tmp_path / ".cache" / "rear").iterdir()) == []
    with pytest.raises(FileNotFoundError, match="pytorch-fid/releases"):
        load_inception(tmp_path / "absent.pth")


def test_the_whole_digest_is_checked_not_the_prefix_in_the_name(tmp_path, monkeypatch):
    import rear.metrics.inception as inception

    (tmp_path / "w.pth").write_bytes(b"x")
    assert inception.WEIGHTS_SHA256.startswith(inception.WEIGHTS_NAME.rsplit("-", 1)[1].split(".")[0])
    monkeypatch.setattr(inception, "sha256", lambda path: inception.WEIGHTS_SHA256[:8] + "0" * 56)
    assert "not 6726825d0af5f729" in inception.check_weights(tmp_path / "w.pth")  # same first 8 digits, other file
    monkeypatch.setattr(inception, "sha256", lambda path: inception.WEIGHTS_SHA256)
    assert inception.check_weights(tmp_path / "w.pth") is None


def test_state_that_does_not_fit_is_refused(tmp_path):
    model = InceptionFeatures()
    state = random_state(model)
    state["fc.weight"] = torch.zeros(1000, 2048)
    torch.save(state, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match="fc.weight"):
        load_inception(tmp_path / "wrong.pth")
    del state["fc.weight"]
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="fc.weight"):
        load_inception(tmp_path / "partial.pth")


def test_preprocessing_maps_mid_gray_to_zero():
    x = InceptionFeatures.preprocess(torch.full((2, 1, 32, 32), 0.5))
    assert x.shape == (2, 3, 299, 299)  # zero up to one float32 ulp: some CPU kernels round the bilinear weights
    torch.testing.assert_close(x, torch.zeros_like(x), atol=1e-6, rtol=0)
    rgb = torch.rand(1, 3, 299, 299)
    torch.testing.assert_close(InceptionFeatures.preprocess(rgb), 2 * rgb - 1)
    with pytest.raises(ValueError, match="1 or 3"):
        InceptionFeatures.preprocess(torch.rand(1, 2, 8, 8))


def test_cli_scores_samples_against_an_adm_reference_batch(saved, tmp_path, monkeypatch, capsys):
    import json

    from rear.cli import main
    from rear.metrics import statistics

    path, _ = saved
    rng = np.random.default_rng(0)
    samples = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    reference_images = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    np.savez(tmp_path / "samples.npz", arr_0=samples)
    features = load_inception(path).embed(torch.from_numpy(reference_images).float().div(255).permute(0, 3, 1, 2))
    mu, sigma = statistics(features["pool"])
    mu_s, sigma_s = statistics(features["spatial"])
    # the layout of ADM's VIRTUAL_imagenet256_labeled.npz: statistics and images, no pool features
    np.savez(tmp_path / "ref.npz", mu=mu, sigma=sigma, mu_s=mu_s, sigma_s=sigma_s, arr_0=reference_images)
    monkeypatch.setenv("REAR_INCEPTION", str(path))
    main(["eval", "score", str(tmp_path / "samples.npz"), "--reference", str(tmp_path / "ref.npz"), "--inception"])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert {"fid", "sfid", "inception_score", "precision", "recall"} <= set(metrics)
    assert "class_accuracy" not in metrics  # Inception classes are not the samples' labels
    main(["eval", "score", str(tmp_path / "ref.npz"), "--reference", str(tmp_path / "ref.npz"), "--inception", str(path)])
    same = json.loads((tmp_path / "metrics.json").read_text())
    assert abs(same["fid"]) < 1e-3 and same["precision"] == same["recall"] == 1.0
