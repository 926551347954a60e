"""The trainable conv VQ tokenizer: interface, code lookup, codebook restarts, folders, training."""
import json

import pytest
import torch

from rear.config import ConvVQConfig, TokenizerTrainConfig
from rear.tokenizer.conv_vq import ConvVQTokenizer, load_conv_vq
from rear.train.tokenizer import (
    CodebookEMA,
    evaluate_tokenizer,
    fit,
    flat_latents,
    shuffled_batches,
    train_tokenizer,
)


def tiny_config(**overrides) -> ConvVQConfig:
    """16 x 16 images -> 4 x 4 tokens over 16 codes of 4 dims."""
    fields = dict(image_size=16, codebook_size=16, code_dim=4, widths=[8, 8, 16], res_blocks=[0, 1, 1], groups=4)
    return ConvVQConfig(**{**fields, **overrides})


def tiny_tokenizer(seed: int = 0, **overrides) -> ConvVQTokenizer:
    torch.manual_seed(seed)
    return ConvVQTokenizer(tiny_config(**overrides)).eval()


def blobs(n: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    """n images [n, 1, size, size] in [0, 1]: one bright axis-aligned rectangle each."""
    g = torch.Generator().manual_seed(seed)
    images = torch.zeros(n, 1, size, size)
    for image in images:
        top, left = torch.randint(0, size - 4, (2,), generator=g).tolist()
        height, width = torch.randint(3, 9, (2,), generator=g).tolist()
        image[:, top : top + height, left : left + width] = torch.rand((), generator=g) * 0.5 + 0.5
    return images


def test_default_config_gives_64_tokens_over_512_codes():
    tokenizer = ConvVQTokenizer(ConvVQConfig())
    assert (tokenizer.grid, tokenizer.num_tokens, tokenizer.codebook_size) == ((8, 8), 64, 512)
    assert (tokenizer.image_size, tokenizer.channels) == (32, 1)
    assert tokenizer.encode(torch.rand(2, 1, 32, 32)).shape == (2, 64)


def test_round_trip_shapes_and_ranges():
    tokenizer = tiny_tokenizer()
    ids = tokenizer.encode(torch.rand(3, 1, 16, 16))  # [B, N]
    assert ids.shape == (3, 16) and ids.dtype == torch.long
    assert 0 <= ids.min() and ids.max() < 16
    images = tokenizer.decode(ids)
    assert images.shape == (3, 1, 16, 16) and 0 <= images.min() and images.max() <= 1
    assert tokenizer.embed(ids).shape == (3, 16, 4) and tokenizer.code_dim == 4
    # codes and latents live on the unit sphere, so squared-L2 lookup is cosine lookup
    torch.testing.assert_close(tokenizer.quantize.embedding.weight.norm(dim=1), torch.ones(16))
    torch.testing.assert_close(tokenizer.encoder(torch.rand(2, 1, 16, 16)).norm(dim=1), torch.ones(2, 4, 4))


def test_lookup_picks_the_nearest_code():
    tokenizer = tiny_tokenizer()
    latents = torch.randn(2, 4, 4, 4)  # [B, Z, h, w], not normalised on purpose
    codes, ids = tokenizer.quantize_latents(latents)
    codebook = tokenizer.quantize.embedding.weight
    expected = torch.cdist(flat_latents(latents), codebook).argmin(1)  # [B*N]
    assert torch.equal(ids.flatten(), expected)
    torch.testing.assert_close(flat_latents(codes), codebook[expected])


def test_dead_codes_restart_on_encoder_outputs():
    # codes 0-3 sit on the data, codes 4-7 point away from every latent and are never chosen
    g = torch.Generator().manual_seed(0)
    latents = torch.nn.functional.normalize(torch.randn(64, 3, generator=g).abs() + 1, dim=1)  # [M, Z]
    codebook = torch.nn.functional.normalize(torch.cat([latents[:4], -latents[:4]]), dim=1)  # [K=8, Z]
    ema = CodebookEMA(codebook, decay=0.5, dead_fraction=0.5, rng=g)
    ema.counts.fill_(8.0)
    ema.sums.copy_(codebook * 8.0)
    nearest = lambda: torch.cdist(latents, codebook).argmin(1)  # noqa: E731
    assert set(nearest().tolist()) <= {0, 1, 2, 3}
    assert ema.update(latents, nearest()) == 0  # EMA counts of 4-7 halve to 4: the threshold
    assert ema.update(latents, nearest()) == 4  # halve again: dead, restarted
    # every former dead code now sits on an encoder output and wins latents again
    assert torch.cdist(codebook[4:], latents).min(1).values.max() < 1e-6
    assert {4, 5, 6, 7} & set(nearest().tolist())
    torch.testing.assert_close(codebook.norm(dim=1), torch.ones(8))


def test_save_load_round_trip(tmp_path):
    tokenizer = tiny_tokenizer(seed=3)
    images = torch.rand(4, 1, 16, 16)
    tokenizer.save_pretrained(tmp_path / "tok")
    loaded = load_conv_vq(tmp_path / "tok")
    assert loaded.config == tokenizer.config and loaded.fingerprint() == tokenizer.fingerprint()
    ids = tokenizer.encode(images)
    assert torch.equal(loaded.encode(images), ids)
    assert torch.equal(loaded.decode(ids), tokenizer.decode(ids))


def test_wrong_image_size_is_a_clear_error():
    tokenizer = tiny_tokenizer()
    with pytest.raises(ValueError, match=r"takes images \[B, 1, 16, 16\]"):
        tokenizer.encode(torch.rand(2, 1, 28, 28))
    with pytest.raises(ValueError, match="takes images"):
        fit(TokenizerTrainConfig(model=tiny_config(), steps=1, batch_size=2), torch.rand(4, 1, 28, 28), progress=False)
    with pytest.raises(ValueError, match="divisible"):
        ConvVQConfig(image_size=30).validate()


def test_loading_a_folder_that_does_not_fit_is_a_clear_error(tmp_path):
    folder = tiny_tokenizer().save_pretrained(tmp_path / "tok")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "code_dim": 8}))
    with pytest.raises(ValueError, match=r"model.safetensors: tensor 'decoder.0.resample.weight' has shape \(16, 4, 3, 3\) but the config implies \(16, 8, 3, 3\)"):
        load_conv_vq(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors not found"):
        load_conv_vq(folder)


def test_batches_visit_every_image_once_per_epoch():
    batches = shuffled_batches(10, 3, torch.Generator().manual_seed(0))
    epoch = torch.cat([next(batches) for _ in range(3)])
    assert len(set(epoch.tolist())) == 9
    with pytest.raises(ValueError, match="batch_size 11"):
        next(shuffled_batches(10, 11, torch.Generator()))


def test_short_training_lowers_the_loss_and_saves_a_loadable_folder(tmp_path):
    images = blobs(64)
    config = TokenizerTrainConfig(model=tiny_config(), out=str(tmp_path / "tok"), steps=60, batch_size=16, eval_size=32)
    config.optim.warmup_steps = 5
    before = evaluate_tokenizer(tiny_tokenizer(), images[:32])
    metrics = train_tokenizer(config, images, images[:32], progress=False)
    assert metrics["mse"] < 0.75 * before["mse"]
    assert metrics["heldout_images"] == 32 and 0 < metrics["usage"] <= 1
    saved = json.loads((tmp_path / "tok" / "metrics.json").read_text())
    assert saved["psnr"] == metrics["psnr"] and saved["config"]["steps"] == 60
    assert evaluate_tokenizer(load_conv_vq(tmp_path / "tok"), images[:32]) == {
        k: metrics[k] for k in ("psnr", "psnr_of_mean_mse", "mse", "usage")
    }


def test_evaluate_reports_psnr_of_each_image_and_of_the_mean():
    tokenizer = tiny_tokenizer()
    images = torch.rand(6, 1, 16, 16)
    metrics = evaluate_tokenizer(tokenizer, images, batch_size=4)
    errors = (tokenizer.decode(tokenizer.encode(images)) - images).pow(2).mean((1, 2, 3))  # [n]
    assert metrics["psnr"] == pytest.approx((10 * torch.log10(1 / errors)).mean().item(), rel=1e-5)
    assert metrics["psnr_of_mean_mse"] == pytest.approx(10 * torch.log10(1 / errors.mean()).item(), rel=1e-5)
    assert metrics["usage"] == len(tokenizer.encode(images).unique()) / 16


def test_source_images_from_a_folder_hold_out_a_tenth(tmp_path):
    from PIL import Image

    from rear.train.tokenizer import source_images

    for name in ("cats", "dogs"):
        (tmp_path / name).mkdir()
        for i in range(10):
            Image.new("L", (24, 20), color=10 * i).save(tmp_path / name / f"{i}.png")
    (tmp_path / "dogs" / "broken.png").write_bytes(b"not a png")
    config = TokenizerTrainConfig(model=tiny_config())
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        train, heldout = source_images(str(tmp_path), config)
    assert train.shape == (18, 1, 16, 16) and heldout.shape == (2, 1, 16, 16)
    with pytest.raises(ValueError, match="unreadable"):
        source_images(str(tmp_path), config, strict=True)
    config.model.channels = 3
    with pytest.raises(ValueError, match="Fashion-MNIST is grayscale"):
        source_images("fashion-mnist", config)
