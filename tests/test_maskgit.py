"""MaskGIT-VQGAN port: exact layout, and a functional reference forward written from docs/method.md, 6."""
import pytest
import torch
import torch.nn.functional as F

from rear.compat import load_maskgit_vqgan
from rear.tokenizer.maskgit import MaskGITVQGAN


@pytest.fixture(scope="module")
def state():
    """A synthetic state dict of the public file's exact layout, with random values."""
    torch.manual_seed(0)
    model = MaskGITVQGAN()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.1 * torch.randn_like(p) if name.endswith("weight") else 0.1 * torch.randn_like(p))
            elif "embedding" in name:
                p.normal_(0, 1)
            else:
                fan_in = p[0].numel() if p.dim() > 1 else 1
                p.normal_(0, (1 / fan_in) ** 0.5 if p.dim() > 1 else 0.02)
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_layout_matches_the_public_file():
    model = MaskGITVQGAN()
    state = model.state_dict()
    assert len(state) == 168
    assert sum(v.numel() for v in state.values()) == 54_515_587
    assert state["quantize.embedding.weight"].shape == (1024, 256)
    assert state["encoder.down.2.block.0.nin_shortcut.weight"].shape == (256, 256, 1, 1)
    assert state["decoder.up.1.upsample_conv.bias"].shape == (128,)
    assert "decoder.up.0.upsample_conv.weight" not in state
    assert "encoder.conv_in.bias" not in state and "encoder.conv_out.bias" in state


# ---- an independent reference written from the documented architecture, functional style
def _gn(x, s, p):
    return F.group_norm(x, 32, s[p + ".weight"], s[p + ".bias"], eps=1e-6)


def _resblock(x, s, p):
    h = F.conv2d(F.silu(_gn(x, s, p + ".norm1")), s[p + ".conv1.weight"], padding=1)
    h = F.conv2d(F.silu(_gn(h, s, p + ".norm2")), s[p + ".conv2.weight"], padding=1)
    if p + ".nin_shortcut.weight" in s:
        return h + F.conv2d(h, s[p + ".nin_shortcut.weight"])
    return x + h


def reference_encode(x, s):
    h = F.conv2d(x, s["encoder.conv_in.weight"], padding=1)
    for level in range(5):
        for j in range(2):
            h = _resblock(h, s, f"encoder.down.{level}.block.{j}")
        if level < 4:
            h = F.avg_pool2d(h, 2)
    for j in range(2):
        h = _resblock(h, s, f"encoder.mid.{j}")
    z = F.conv2d(F.silu(_gn(h, s, "encoder.norm_out")), s["encoder.conv_out.weight"], s["encoder.conv_out.bias"])
    flat = z.permute(0, 2, 3, 1).reshape(-1, 256)
    ids = torch.cdist(flat.double(), s["quantize.embedding.weight"].double()).argmin(1)
    return z, ids.view(x.shape[0], -1)


def reference_decode(ids, s):
    B, n = ids.shape
    side = int(n**0.5)
    h = s["quantize.embedding.weight"][ids].view(B, side, side, 256).permute(0, 3, 1, 2)
    h = F.conv2d(h, s["decoder.conv_in.weight"], s["decoder.conv_in.bias"], padding=1)
    for j in range(2):
        h = _resblock(h, s, f"decoder.mid.{j}")
    for level in (4, 3, 2, 1, 0):
        for j in range(2):
            h = _resblock(h, s, f"decoder.up.{level}.block.{j}")
        if level > 0:
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")
            h = F.conv2d(h, s[f"decoder.up.{level}.upsample_conv.weight"], s[f"decoder.up.{level}.upsample_conv.bias"], padding=1)
    h = F.conv2d(F.silu(_gn(h, s, "decoder.norm_out")), s["decoder.conv_out.weight"], s["decoder.conv_out.bias"], padding=1)
    return h.clamp(0, 1)


def test_port_matches_reference_forward(tmp_path, state):
    torch.save(state, tmp_path / "maskgit-vqgan-imagenet-f16-256.bin")
    tokenizer = load_maskgit_vqgan(tmp_path / "maskgit-vqgan-imagenet-f16-256.bin")
    assert (tokenizer.codebook_size, tokenizer.code_dim, tokenizer.grid) == (1024, 256, (16, 16))
    images = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        _, expected_ids = reference_encode(images, state)
        ids = tokenizer.encode(images)
        assert ids.shape == (1, 256)
        assert (ids == expected_ids).float().mean() > 0.99  # near-ties may flip in float32
        decoded = tokenizer.decode(expected_ids)
        assert torch.allclose(decoded, reference_decode(expected_ids, state), atol=1e-4)
    assert torch.equal(tokenizer.embed(ids)[0, 5], state["quantize.embedding.weight"][ids[0, 5]])
    assert decoded.min() >= 0 and decoded.max() <= 1


def test_wrong_image_size_is_refused(state):
    tokenizer = MaskGITVQGAN()
    with pytest.raises(ValueError, match=r"images \[B, 3, 256, 256\]"):
        tokenizer.encode(torch.rand(1, 3, 224, 224))


def test_state_dict_of_another_layout_is_refused(tmp_path, state):
    broken = dict(state)
    broken["quantize.embedding.weight"] = torch.zeros(512, 256)
    torch.save(broken, tmp_path / "bad.bin")
    with pytest.raises(ValueError, match="quantize.embedding.weight"):
        load_maskgit_vqgan(tmp_path / "bad.bin")
