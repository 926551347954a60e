"""reAR training: schedule, corruption, alignment positions, the trainer (DDP, resume, atomic saves)."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from conftest import tiny_conv_vq
from rear.config import Corruption, NoiseConfig, OptimConfig, TrainConfig, generator_preset, merge
from rear.data.sources import Source
from rear.data.store import TokenStore, pretokenize
from rear.generator import build_generator
from rear.optim import decay_groups, learning_rate
from rear.regularizers import alignment_loss, corrupt_context, noise_ratio
from rear.tokenizer.load import load_tokenizer
from rear.train.batches import regularize
from rear.train.trainer import train

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ the regularizers
def test_noise_schedule_values():
    assert noise_ratio(0, 0, 100) == 1.0
    assert noise_ratio(50, 0, 100) == 0.5
    assert noise_ratio(100, 0, 100) == 0.0 and noise_ratio(1000, 0, 100) == 0.0
    assert noise_ratio(10, 20, 120) == 1.0 and noise_ratio(70, 20, 120) == 0.5


@pytest.mark.parametrize("ratio", [1.0, 0.5, 0.0])
def test_corrupted_fraction_is_half_the_bound(ratio):
    tokens = torch.randint(0, 64, (4000, 64))
    context, corrupted = corrupt_context(tokens, ratio, 64, rng=torch.Generator().manual_seed(0))
    assert abs(corrupted.float().mean().item() - ratio / 2) < 0.01
    assert torch.equal(context[~corrupted], tokens[~corrupted])
    # switch mode draws uniform codes: about 1/64 of them equal the original and still count
    same = (context == tokens)[corrupted].float().mean().item() if ratio else 0.0
    assert same < 0.03
    per_sample = corrupted.float().mean(1)
    if ratio:  # rho ~ U(0, r): per-sample rates spread over [0, r]
        assert per_sample.max() > 0.9 * ratio and per_sample.min() < 0.1 * ratio


def test_mask_mode_writes_the_mask_id():
    tokens = torch.randint(0, 16, (200, 32))
    context, corrupted = corrupt_context(tokens, 1.0, 16, mask_id=16, rng=torch.Generator().manual_seed(0))
    assert corrupted.any() and (context[corrupted] == 16).all() and (context[~corrupted] < 16).all()


def test_regularize_touches_only_image_tokens_and_drops_labels():
    tokens, labels = torch.randint(0, 16, (512, 4)), torch.randint(0, 5, (512,))
    noise = NoiseConfig(corruption=Corruption.MASK, anneal_end=100)
    context, corrupted, kept, ratio = regularize(tokens, labels, 0, 0, noise, label_dropout=0.0, codebook_size=16,
                                                 null_label=5)
    assert ratio == 1.0 and context.shape == tokens.shape and torch.equal(kept, labels)
    assert torch.equal(corrupted, context == 16)  # mask mode: exactly the masked positions
    _, _, dropped, _ = regularize(tokens, labels, 0, 0, noise, label_dropout=0.25, codebook_size=16, null_label=5)
    assert abs((dropped == 5).float().mean().item() - 0.25) < 0.06
    off = NoiseConfig(enabled=False)
    context, _, _, ratio = regularize(tokens, labels, 0, 0, off, 0.0, 16, 5)
    assert ratio == 0.0 and torch.equal(context, tokens)


def test_alignment_positions_on_a_hand_built_model():
    """One-hot embeddings and identity blocks: the encode head must see t_i, the decode head t_{i-1}."""
    K, N, C = 8, 8, 2
    V = K + 1 + C + 1  # one-hot embeddings need D = V
    config = generator_preset("rear-tiny", codebook_size=K, num_classes=C, num_tokens=N, width=V, heads=2,
                              align={"code_dim": V, "decode_layer": 1})
    model = build_generator(config).eval()  # adaLN-Zero: every block is the identity
    with torch.no_grad():
        model.embeddings.weight.copy_(torch.eye(V))
        model.pos_embed.zero_()
        model.target_aware_pos_embed.zero_()
    encode, decode = nn.Linear(V, V, bias=False), nn.Linear(V, V, bias=False)
    with torch.no_grad():
        encode.weight.copy_(torch.eye(V))
        decode.weight.zero_()
        for j in range(N - 1):
            decode.weight[j + 1, j] = 1  # the state holding t_{i-1} = i-1 points at t_i = i
        decode.weight[0, K + 1 + 1] = 1  # the class position (label 1) points at t_0
    model.encode_align_mlp, model.decode_align_mlp = encode, decode
    tokens, labels = torch.arange(N)[None], torch.tensor([1])
    code_vectors = torch.eye(V)[tokens]  # e(x_i) = one-hot(i)
    losses = model.training_losses(tokens, labels, code_vectors)
    assert torch.allclose(losses["align"], torch.tensor(-2.0))
    context = tokens.clone()
    context[0, 3] = 5  # corrupted input: its encode term is zeroed but still counted in the mean,
    losses = model.training_losses(tokens, labels, code_vectors, context)  # and the decode head
    assert torch.allclose(losses["align"], torch.tensor(-2 * (N - 1) / N))  # reading it misses t_4


def test_a_switch_that_drew_the_true_code_still_counts_as_corrupted():
    torch.manual_seed(0)
    model = build_generator(generator_preset("rear-tiny", codebook_size=16, num_classes=3, num_tokens=4,
                                       align={"code_dim": 8, "decode_layer": 1})).eval()
    tokens, labels = torch.randint(0, 16, (2, 4)), torch.tensor([0, 1])
    vectors = torch.randn(2, 4, 8)
    drawn = torch.ones(2, 4, dtype=torch.bool)  # every position drawn by the noise, each switched to itself
    all_drawn = model.training_losses(tokens, labels, vectors, tokens, drawn)["align"]
    decode_only = build_generator(generator_preset("rear-tiny", codebook_size=16, num_classes=3, num_tokens=4,
                                             align={"code_dim": 8, "decode_layer": 1, "encode": False}))
    decode_only.load_state_dict(model.state_dict(), strict=False)
    assert torch.allclose(all_drawn, decode_only.eval().training_losses(tokens, labels, vectors)["align"])
    assert not torch.allclose(all_drawn, model.training_losses(tokens, labels, vectors, tokens)["align"])
    with pytest.raises(ValueError, match="16 is the mask id"):
        model.training_losses(torch.full((2, 4), 16), labels, vectors)


def test_alignment_loss_formula():
    e, enc, dec = torch.randn(2, 5, 3), torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    mask = torch.zeros(2, 5, dtype=torch.bool)
    mask[0, 1] = True
    cos = lambda a, b: torch.nn.functional.cosine_similarity(a, b, dim=-1)  # noqa: E731
    expected = -(cos(enc, e) * (~mask)).sum() / 10 - cos(dec, e).mean()
    assert torch.allclose(alignment_loss(enc, dec, e, mask), expected, atol=1e-6)


# ------------------------------------------------------------------ the recipe
def test_decay_groups_cover_linear_weights_only():
    model = build_generator(generator_preset("rear-tiny", codebook_size=16, num_classes=3, num_tokens=4))
    decayed, plain = decay_groups(model, 0.03)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(names[id(p)].endswith("weight") and p.dim() == 2 for p in decayed["params"])
    plain_names = {names[id(p)] for p in plain["params"]}
    assert {"embeddings.weight", "pos_embed", "cls_token", "timesteps_embeddings", "blocks.0.norm1.weight",
            "blocks.0.attn.qkv.bias", "blocks.0.attn.q_norm.weight"} <= plain_names
    assert len(decayed["params"]) + len(plain["params"]) == len(list(model.parameters()))


def test_learning_rate_warmup_and_cosine():
    c = OptimConfig(learning_rate=1e-3, end_learning_rate=1e-5, warmup_steps=10)
    assert learning_rate(0, 100, c) == pytest.approx(1e-4)
    assert learning_rate(9, 100, c) == pytest.approx(1e-3)
    assert learning_rate(55, 100, c) == pytest.approx((1e-3 + 1e-5) / 2)
    assert learning_rate(100, 100, c) == pytest.approx(1e-5)


# ------------------------------------------------------------------ the trainer
@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A tiny tokenizer folder and a 64-item store of 2x2 tokens over 3 classes."""
    root = tmp_path_factory.mktemp("run")
    tokenizer = tiny_conv_vq()  # the trainer loads it: a real tokenizer folder
    tokenizer.save_pretrained(root / "tok")
    torch.manual_seed(0)
    images, labels = torch.rand(64, 1, 8, 8), torch.arange(64) % 3
    source = Source("memory:train", 64, ["a", "b", "c"], lambda a, b, size: (images[a:b], labels[a:b], []))
    pretokenize(source, tokenizer, root / "store", tokenizer_path=str(root / "tok"), progress=False)
    return root


def tiny_run(workspace, out, *overrides):
    return merge(TrainConfig, {
        "store": str(workspace / "store"), "tokenizer": str(workspace / "tok"), "out_dir": str(out),
        "generator": {"codebook_size": 16, "num_classes": 3, "num_tokens": 4, "width": 32, "depth": 2, "heads": 2,
                      "extra_position_rows": 2, "extra_step_rows": 2,
                      "align": {"code_dim": 8, "decode_layer": 1, "projection_dim": 16}},
        "noise": {"anneal_end": 6}, "optim": {"warmup_steps": 2, "learning_rate": 1e-3},
        "steps": 6, "batch_size": 8, "grad_accumulation": 2, "bf16": False, "log_every": 1,
        "samples_per_class": 0, "checkpoint_every": 1000, "threads": 1,
    }, list(overrides))


def weights(folder):
    return load_file(Path(folder) / "model.safetensors")


def test_resume_is_exact(workspace, tmp_path):
    straight = train(tiny_run(workspace, tmp_path / "a"), progress=False)
    train(tiny_run(workspace, tmp_path / "b"), progress=False, until=3)  # the same recipe, stopped half-way
    resumed = train(tiny_run(workspace, tmp_path / "b"), resume=True, progress=False)
    a, b = weights(straight), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "a" / "log.jsonl").read_text().count("\n") == 6
    assert (tmp_path / "a" / "loss.png").is_file()
    # the checkpoint says how to sample it and what it was trained on
    generation = json.loads((tmp_path / "a" / "checkpoint" / "generation_config.json").read_text())
    assert generation == {"sample": {"cfg_scale": 15.0, "cfg_power": 2.5, "temperature": 1.0, "top_k": None,
                                     "top_p": None}, "class_names": ["a", "b", "c"]}
    assert "| steps | 6 of 6 |" in (tmp_path / "a" / "checkpoint" / "README.md").read_text()


def test_stopping_at_a_step_and_resuming_is_the_same_run(workspace, tmp_path):
    straight = weights(train(tiny_run(workspace, tmp_path / "a"), progress=False))
    config = tiny_run(workspace, tmp_path / "b")
    checkpoint = train(config, progress=False, until=2)
    assert torch.load(checkpoint / "train_state.pt", weights_only=True)["step"] == 2
    train(config, resume=True, progress=False, until=2)  # already there: trains and logs nothing
    resumed = weights(train(config, resume=True, progress=False))
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    assert [json.loads(line)["step"] for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()] == list(range(1, 7))
    with pytest.raises(ValueError, match="past the requested stop"):
        train(config, resume=True, progress=False, until=3)
    with pytest.raises(ValueError, match="cannot stop at step 7"):
        train(config, resume=True, progress=False, until=7)


def test_the_step_reads_no_id_back_from_the_device(workspace, tmp_path, monkeypatch):
    """Token and label ranges are checked once where the store is opened, not per micro-batch (each such
    check is a device sync on a GPU); shapes are still checked per step, values only at the API."""
    from rear.generator.base import Generator

    seen, check = [], Generator.check_inputs

    def spy(self, labels, tokens=None, values=True):
        seen.append(values)
        return check(self, labels, tokens, values)

    monkeypatch.setattr(Generator, "check_inputs", spy)
    train(tiny_run(workspace, tmp_path / "a", "steps=2", "grad_accumulation=2"), progress=False)
    assert seen and not any(seen)


def test_between_log_and_checkpoint_steps_nothing_is_read_back_from_the_device(workspace, tmp_path, monkeypatch):
    """A step reads no tensor value on the host (each read is a device sync on a GPU): the NaN guard skips the
    optimizer step on the device (fused AdamW's found_inf) and the host reads a step's agreement (finite,
    stop) from a non-blocking copy one step later. Values are read only at the boundaries: log, checkpoint,
    sample grid, the last step."""
    import rear.train.trainer as trainer
    from torch.utils._python_dispatch import TorchDispatchMode

    steps, reads, delayed = {"n": 0}, [], []  # n: the step in progress (0: setting up)
    real_rate, real_read, real_tolist = trainer.learning_rate, trainer.Pending.finite_and_stop, torch.Tensor.tolist

    def rate(*args, **kwargs):  # the first thing of every step
        steps["n"] += 1
        return real_rate(*args, **kwargs)

    def read(self):
        delayed.append((steps["n"], self.done))
        return real_read(self)

    def tolist(tensor):
        if not any(frame.name == "finite_and_stop" for frame in __import__("traceback").extract_stack()):
            reads.append((steps["n"], "tolist"))
        return real_tolist(tensor)

    class Reads(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten._local_scalar_dense.default:  # .item(), bool(), float() of a tensor
                reads.append((steps["n"], "item"))
            return func(*args, **(kwargs or {}))

    monkeypatch.setattr(trainer, "learning_rate", rate)
    monkeypatch.setattr(trainer.Pending, "finite_and_stop", read)
    monkeypatch.setattr(torch.Tensor, "tolist", tolist)
    with Reads():
        train(tiny_run(workspace, tmp_path / "a", "steps=6", "log_every=3", "checkpoint_every=1000"), progress=False)
    assert {n for n, _ in reads} <= {0, 3, 6}, f"values read back during steps {sorted({n for n, _ in reads})}"
    # each step's agreement is read once: steps 1, 2, 4, 5 in the step after them, 3 and 6 at their boundary
    assert delayed == [(2, 1), (3, 2), (3, 3), (5, 4), (6, 5), (6, 6)]


def test_a_skipped_step_is_skipped_on_the_device_and_counted_a_step_later(workspace, tmp_path, monkeypatch):
    """NaN gradients in steps 2 and 4, no boundary between: the weights stay finite, the checkpoint counts 2
    skipped, and with a limit of 1 the run stops naming step 4."""
    calls = nan_gradient_norm_in_steps(monkeypatch, 2, 4)
    quiet = ["steps=6", "log_every=1000", "checkpoint_every=1000", "skip_nonfinite=2"]
    checkpoint = train(tiny_run(workspace, tmp_path / "a", *quiet), progress=False)
    assert torch.load(checkpoint / "train_state.pt", weights_only=True)["skipped"] == 2
    assert all(torch.isfinite(v).all() for v in weights(checkpoint).values())
    calls["n"] = 0
    with pytest.raises(FloatingPointError, match="step 4.*skip_nonfinite"):
        train(tiny_run(workspace, tmp_path / "b", *quiet[:-1], "skip_nonfinite=1"), progress=False)
    assert not (tmp_path / "b" / "checkpoint").exists()


def test_a_compiled_training_step_trains_as_eager(workspace, tmp_path):
    """compile=true (torch.compile of the forward and backward) reaches the eager run's weights (dropout off:
    a compiled graph draws its own masks; the noisy context is drawn outside the model), and its checkpoint
    is an ordinary one (no compiler prefix in the names) that resumes eagerly."""
    overrides = ["generator.dropout=0", "generator.attn_dropout=0", "steps=3"]
    eager = weights(train(tiny_run(workspace, tmp_path / "eager", *overrides), progress=False))
    config = tiny_run(workspace, tmp_path / "compiled", *overrides, "compile=true")
    from torch._dynamo.utils import counters

    counters.clear()
    train(config, progress=False, until=2)
    assert counters["stats"]["unique_graphs"] >= 1, "compile=true ran nothing through the compiler"
    assert not counters["graph_break"], f"the compiled step breaks its graph: {dict(counters['graph_break'])}"
    compiled = weights(train(tiny_run(workspace, tmp_path / "compiled", *overrides), resume=True, progress=False))
    assert compiled.keys() == eager.keys()
    for k in eager:
        torch.testing.assert_close(compiled[k], eager[k], atol=1e-5, rtol=1e-4)


def test_existing_run_is_not_overwritten(workspace, tmp_path):
    train(tiny_run(workspace, tmp_path / "a", "steps=1"), progress=False)
    with pytest.raises(FileExistsError, match="pass --resume"):
        train(tiny_run(workspace, tmp_path / "a", "steps=1"), progress=False)


def test_crash_during_a_save_keeps_the_last_checkpoint(workspace, tmp_path, monkeypatch):
    checkpoint = train(tiny_run(workspace, tmp_path / "a", "steps=4"), progress=False, until=2)
    before = weights(checkpoint)
    import rear.weights

    def crash(*args, **kwargs):
        raise RuntimeError("killed mid-write")

    monkeypatch.setattr(rear.weights, "save_file", crash)  # every weight file goes through rear.weights
    with pytest.raises(RuntimeError, match="killed"):
        train(tiny_run(workspace, tmp_path / "a", "steps=4"), resume=True, progress=False)
    after = weights(checkpoint)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert sorted(p.name for p in (tmp_path / "a").iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("rate", [1e6, 1e300])  # 1e300: inf in float32
def test_a_non_finite_loss_never_overwrites_the_last_good_checkpoint(workspace, tmp_path, rate, monkeypatch):
    import rear.train.trainer as trainer

    checkpoint = train(tiny_run(workspace, tmp_path / "a", "steps=6", "checkpoint_every=1"), progress=False, until=2)
    good = weights(checkpoint)
    monkeypatch.setattr(trainer, "learning_rate", lambda *args: rate)  # the run diverges from here on
    bad = tiny_run(workspace, tmp_path / "a", "steps=6", "checkpoint_every=1")
    with pytest.raises(FloatingPointError, match=r"not finite.*last good checkpoint .*\(step \d\) is untouched") as error:
        train(bad, resume=True, progress=False)
    on_disk = torch.load(checkpoint / "train_state.pt", weights_only=True)["step"]
    assert f"(step {on_disk})" in str(error.value)
    assert all(torch.isfinite(v).all() for v in weights(checkpoint).values())
    if rate == 1e300:  # the first step already breaks the weights: the step-2 checkpoint stays as it was
        assert on_disk == 2 and all(torch.equal(good[k], v) for k, v in weights(checkpoint).items())
    with pytest.raises(FloatingPointError, match="no checkpoint was written yet"):
        train(tiny_run(workspace, tmp_path / "b", f"optim.learning_rate={rate}"), progress=False)
    assert not (tmp_path / "b" / "checkpoint").exists()


def nan_gradient_norm_in_steps(monkeypatch, *steps: int) -> dict:
    """Make the trainer's gradient norm NaN in the given steps (counted from 1 by its calls; reset
    calls["n"] to 0 to count again)."""
    import rear.train.trainer as trainer

    real = torch.nn.utils.clip_grad_norm_
    calls = {"n": 0}

    def nan_in_steps(parameters, *args, **kwargs):
        calls["n"] += 1
        norm = real(parameters, *args, **kwargs)
        return norm * float("nan") if calls["n"] in steps else norm

    monkeypatch.setattr(trainer.torch.nn.utils, "clip_grad_norm_", nan_in_steps)
    return calls


def test_non_finite_steps_are_skipped_up_to_the_limit(workspace, tmp_path, monkeypatch):
    calls = nan_gradient_norm_in_steps(monkeypatch, 2, 3)
    checkpoint = train(tiny_run(workspace, tmp_path / "a", "skip_nonfinite=2"), progress=False)
    assert torch.load(checkpoint / "train_state.pt", weights_only=True)["skipped"] == 2
    assert all(torch.isfinite(v).all() for v in weights(checkpoint).values())
    calls["n"] = 0
    with pytest.raises(FloatingPointError, match="step 3.*skip_nonfinite"):
        train(tiny_run(workspace, tmp_path / "b", "skip_nonfinite=1"), progress=False)


def test_a_kill_between_the_two_renames_loses_nothing(workspace, tmp_path, monkeypatch):
    import rear.weights

    out = tmp_path / "a"
    train(tiny_run(workspace, out, "steps=6"), progress=False, until=2)
    real = rear.weights.os.replace

    def killed_after_first_rename(src, dst):
        if Path(dst).name == "checkpoint":  # `checkpoint -> .checkpoint.old` is done, `staging -> checkpoint` not
            raise KeyboardInterrupt
        return real(src, dst)

    monkeypatch.setattr(rear.weights.os, "replace", killed_after_first_rename)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_run(workspace, out, "steps=6"), resume=True, progress=False, until=4)
    monkeypatch.setattr(rear.weights.os, "replace", real)
    assert not (out / "checkpoint").exists() and (out / ".checkpoint.old").is_dir()
    resumed = train(tiny_run(workspace, out, "steps=6"), resume=True, progress=False)  # finds step 2 again
    straight = train(tiny_run(workspace, tmp_path / "b", "steps=6"), progress=False)
    assert all(torch.equal(weights(straight)[k], v) for k, v in weights(resumed).items())
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no staging leftovers


def test_a_new_run_never_appends_to_another_runs_logs(workspace, tmp_path):
    out = tmp_path / "a"
    out.mkdir()
    (out / "log.jsonl").write_text('{"step": 1, "ce": 9.0}\n')
    with pytest.raises(FileExistsError, match="another run's log.jsonl.*--overwrite"):
        train(tiny_run(workspace, out, "steps=2"), progress=False)
    assert (out / "log.jsonl").read_text() == '{"step": 1, "ce": 9.0}\n'
    train(tiny_run(workspace, out, "steps=2"), progress=False, overwrite=True)
    assert [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()] == [1, 2]


@pytest.mark.parametrize("override, message", [
    ("steps=-5", r"steps must lie in \[1, inf\), got -5"), ("log_every=0", "log_every must lie in"),
    ("batch_size=0", "batch_size must lie in"), ("label_dropout=1.0", r"label_dropout must lie in \[0, 1\)"),
    ("noise.anneal_start=7", "noise.anneal_end .* must not come before noise.anneal_start"),
])
def test_out_of_range_settings_are_refused(workspace, tmp_path, override, message):
    with pytest.raises(ValueError, match=message):
        train(tiny_run(workspace, tmp_path / "a", override), progress=False)
    assert not (tmp_path / "a").exists()


def test_loss_decreases_on_a_tiny_overfit_run(workspace, tmp_path):
    train(tiny_run(workspace, tmp_path / "a", "steps=60", "noise.enabled=false", "label_dropout=0",
                   "generator.dropout=0", "generator.attn_dropout=0", "optim.warmup_steps=5"), progress=False)
    import json

    records = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert records[-1]["ce"] < 0.6 * records[0]["ce"]
    assert records[-1]["align"] < records[0]["align"] - 0.1


@pytest.mark.parametrize("noise, align, expect_noise, expect_align", [
    ("false", "false", False, False), ("true", "false", True, False), ("false", "true", False, True), ("true", "true", True, True),
])
def test_the_four_arms(workspace, tmp_path, noise, align, expect_noise, expect_align):
    train(tiny_run(workspace, tmp_path / "a", "steps=2", f"noise.enabled={noise}",
                   f"generator.align.encode={align}", f"generator.align.decode={align}"), progress=False)
    import json

    record = json.loads((tmp_path / "a" / "log.jsonl").read_text().splitlines()[0])
    assert (record["noise_ratio"] > 0) == expect_noise
    assert (record["align"] != 0) == expect_align
    assert any(k.startswith("encode_align_mlp") for k in weights(tmp_path / "a" / "checkpoint")) == expect_align


def test_store_of_another_tokenizer_is_refused(workspace, tmp_path):
    tiny_conv_vq(seed=5).save_pretrained(tmp_path / "tok")
    with pytest.raises(ValueError, match="was made by tokenizer"):
        train(tiny_run(workspace, tmp_path / "a", f"tokenizer={tmp_path / 'tok'}"), progress=False)


def test_store_that_does_not_fit_the_generator_is_refused(workspace, tmp_path):
    with pytest.raises(ValueError, match="codebook_size=16 but the config says generator.codebook_size=32"):
        train(tiny_run(workspace, tmp_path / "a", "generator.codebook_size=32"), progress=False)


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(workspace, tmp_path):
    """torchrun, 2 gloo ranks x batch 4 == 1 process x batch 8 (dropout off; noise and label dropout on)."""
    overrides = ["generator.dropout=0", "generator.attn_dropout=0", "steps=3"]
    single = train(tiny_run(workspace, tmp_path / "one", *overrides), progress=False)
    config = tiny_run(workspace, tmp_path / "two", *overrides)
    from omegaconf import OmegaConf

    (tmp_path / "two.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(config)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
         "-m", "rear", "train", str(tmp_path / "two.yaml")],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    a, b = weights(single), weights(tmp_path / "two" / "checkpoint")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=2e-6, rtol=1e-5)


def test_more_ranks_than_gpus_is_refused_by_name(monkeypatch):
    """torchrun --nproc_per_node 2 on a one-GPU node: a one-line error naming the count to launch, not
    CUDA's 'invalid device ordinal' from the second rank."""
    from rear import distributed

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for name, value in (("WORLD_SIZE", "2"), ("RANK", "1"), ("LOCAL_RANK", "1")):
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match="--nproc_per_node 1 or fewer"):
        distributed.setup()


@pytest.mark.slow
@pytest.mark.parametrize("log_every", [1, 1000])  # 1000: the agreement on a stop is read a step later
def test_ctrl_c_on_one_rank_saves_the_step_all_ranks_agree_on(workspace, tmp_path, log_every):
    """torchrun, 2 gloo ranks: SIGINT reaches rank 1 alone during step 2; both ranks finish it, save it and
    stop; the resumed run ends where one uninterrupted process ends."""
    overrides = ["generator.dropout=0", "generator.attn_dropout=0", "steps=3", f"log_every={log_every}"]
    single = weights(train(tiny_run(workspace, tmp_path / "one", *overrides), progress=False))
    from omegaconf import OmegaConf

    (tmp_path / "two.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(tiny_run(workspace, tmp_path / "two",
                                                                                       *overrides))))
    (tmp_path / "interrupted.py").write_text(
        "import os, signal, sys\n"
        "import rear.train.trainer as trainer\n"
        "from rear.cli import main\n"
        "real, calls = trainer.regularize, []\n"
        "def regularize(*args, **kwargs):\n"
        "    calls.append(1)\n"
        "    if len(calls) == 2 and os.environ['RANK'] == '1':\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "    return real(*args, **kwargs)\n"
        "trainer.regularize = regularize\n"
        "main(sys.argv[1:])\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29518"]
    result = subprocess.run([*launch, str(tmp_path / "interrupted.py"), "train", str(tmp_path / "two.yaml")],
                            capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert result.returncode != 0 and "saved step 2" in result.stderr, result.stderr[-2000:]
    assert torch.load(tmp_path / "two" / "checkpoint" / "train_state.pt", weights_only=True)["step"] == 2
    result = subprocess.run([*launch, "-m", "rear", "train", str(tmp_path / "two.yaml"), "--resume"],
                            capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    resumed = weights(tmp_path / "two" / "checkpoint")
    for k in single:
        torch.testing.assert_close(single[k], resumed[k], atol=2e-6, rtol=1e-5)


def test_an_interrupt_saves_a_consistent_checkpoint(workspace, tmp_path, monkeypatch):
    import rear.train.trainer as trainer

    real, calls = trainer.accumulate_gradients, {"n": 0}

    def ctrl_c_in_the_third_step(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "accumulate_gradients", ctrl_c_in_the_third_step)
    with pytest.raises(KeyboardInterrupt, match="saved step 2 .*--resume"):
        train(tiny_run(workspace, tmp_path / "a"), progress=False)
    monkeypatch.setattr(trainer, "accumulate_gradients", real)
    resumed = weights(train(tiny_run(workspace, tmp_path / "a"), resume=True, progress=False))
    straight = weights(train(tiny_run(workspace, tmp_path / "b"), progress=False))
    assert all(torch.equal(straight[k], v) for k, v in resumed.items())


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs (needs root and mount rights)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root and mount rights)")
    yield disk
    subprocess.run(["umount", "--lazy", str(disk)], check=True)


def test_a_full_disk_keeps_the_last_checkpoint(workspace, small_disk, capsys):
    from rear.cli import main

    out = small_disk / "run"
    config = tiny_run(workspace, out, "steps=4")
    train(config, progress=False, until=2)
    before = weights(out / "checkpoint")
    with open(small_disk / "filler", "wb", buffering=0) as filler:  # leave the disk full (unbuffered: close has nothing to flush)
        try:
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()
        except OSError:
            pass
    import yaml

    (small_disk.parent / "run.yaml").write_text(yaml.safe_dump({"store": config.store, "tokenizer": config.tokenizer}))
    overrides = [f"{k}={v}" for k, v in (("out_dir", out), ("steps", 4), ("batch_size", 8), ("grad_accumulation", 2),
                                          ("bf16", False), ("samples_per_class", 0), ("threads", 1),
                                          ("generator.codebook_size", 16), ("generator.num_classes", 3),
                                          ("generator.num_tokens", 4), ("generator.width", 32), ("generator.depth", 2),
                                          ("generator.heads", 2), ("generator.extra_position_rows", 2),
                                          ("generator.extra_step_rows", 2), ("generator.align.code_dim", 8),
                                          ("generator.align.decode_layer", 1), ("generator.align.projection_dim", 16),
                                          ("noise.anneal_end", 6), ("optim.warmup_steps", 2), ("optim.learning_rate", 1e-3))]
    with pytest.raises(SystemExit) as exit:
        main(["train", str(small_disk.parent / "run.yaml"), *overrides, "--resume"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit.value.code == 2 and "No space left on device" in err and "free some space" in err and "Errno" not in err
    assert all(torch.equal(before[k], v) for k, v in weights(out / "checkpoint").items())
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


def test_resume_refuses_another_recipe_and_names_the_keys(workspace, tmp_path, monkeypatch):
    train(tiny_run(workspace, tmp_path / "a", "steps=6"), progress=False, until=2)
    for overrides, named in ((["seed=7"], "seed (42 -> 7)"), (["batch_size=4"], "batch_size (8 -> 4)"),
                             (["optim.learning_rate=0.01"], "optim.learning_rate (0.001 -> 0.01)"),
                             (["steps=8"], "steps (6 -> 8)"), (["noise.enabled=false"], "noise.enabled (True -> False)")):
        with pytest.raises(ValueError, match=re.escape(named)):
            train(tiny_run(workspace, tmp_path / "a", "steps=6", *overrides), resume=True, progress=False, until=4)
    assert json.loads((tmp_path / "a" / "log.jsonl").read_text().splitlines()[-1])["step"] == 2  # nothing ran
    # what cannot change the run's history may change; a path is the same path however it is written
    monkeypatch.chdir(workspace)
    same = tiny_run(workspace, tmp_path / "a", "steps=6", "log_every=2", "threads=2", "sample.cfg_scale=2.0",
                    "store=./store", "tokenizer=tok/")
    train(same, resume=True, progress=False, until=4)
    assert json.loads((tmp_path / "a" / "log.jsonl").read_text().splitlines()[-1])["step"] == 4


def test_resume_refuses_a_store_rebuilt_in_place(workspace, tmp_path):
    """Same path, same tokenizer, other images: the run would go on with data it never began on."""
    shutil.copytree(workspace / "tok", tmp_path / "tok")
    shutil.copytree(workspace / "store", tmp_path / "store")
    run = ("steps=6", f"store={tmp_path / 'store'}", f"tokenizer={tmp_path / 'tok'}")
    train(tiny_run(workspace, tmp_path / "a", *run), progress=False, until=2)
    recorded = json.loads((tmp_path / "a" / "checkpoint" / "inputs.json").read_text())
    assert recorded["store"] == TokenStore(tmp_path / "store").digest
    shutil.rmtree(tmp_path / "store")
    images, labels = torch.rand(64, 1, 8, 8), torch.arange(64) % 3
    source = Source("memory:train", 64, ["a", "b", "c"], lambda a, b, size: (images[a:b], labels[a:b], []))
    pretokenize(source, load_tokenizer(tmp_path / "tok"), tmp_path / "store", tokenizer_path=str(tmp_path / "tok"),
                progress=False)
    with pytest.raises(ValueError, match="trained on another store than .* holds now .*rebuilt or replaced in place"):
        train(tiny_run(workspace, tmp_path / "a", *run), resume=True, progress=False, until=4)
    assert json.loads((tmp_path / "a" / "log.jsonl").read_text().splitlines()[-1])["step"] == 2  # nothing ran


@pytest.mark.parametrize("where", ["regularize", "clip", "optimizer", "log", "grid"])
def test_ctrl_c_anywhere_in_a_step_saves_it_and_the_resume_is_exact(workspace, tmp_path, monkeypatch, where):
    """A SIGINT in batch drawing, clipping, the optimizer step, logging or the sample grid: the step finishes,
    is saved, the run stops with KeyboardInterrupt; resuming it ends where an uninterrupted run ends."""
    import os
    import signal

    import rear.train.trainer as trainer

    extra = ("samples_per_class=1", "sample_every=1", "sample_classes=1") if where == "grid" else ()
    straight = weights(train(tiny_run(workspace, tmp_path / "a", *extra), progress=False))
    calls = {"n": 0}

    def interrupting(real):
        def wrapper(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 3:  # during the third step
                os.kill(os.getpid(), signal.SIGINT)
            return real(*args, **kwargs)
        return wrapper

    targets = {"regularize": (trainer, "regularize"), "clip": (torch.nn.utils, "clip_grad_norm_"),
               "optimizer": (torch.optim.AdamW, "step"), "log": (trainer.Logger, "log"),
               "grid": (trainer, "sample_grid")}
    owner, name = targets[where]
    monkeypatch.setattr(owner, name, interrupting(getattr(owner, name)))
    with pytest.raises(KeyboardInterrupt, match="interrupted: saved step 3 to"):
        train(tiny_run(workspace, tmp_path / "b", *extra), progress=False)
    assert torch.load(tmp_path / "b" / "checkpoint" / "train_state.pt", weights_only=True)["step"] == 3
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
    monkeypatch.undo()
    resumed = weights(train(tiny_run(workspace, tmp_path / "b", *extra), resume=True, progress=False))
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


def test_a_second_ctrl_c_stops_at_once(workspace, tmp_path, monkeypatch):
    import os
    import signal

    import rear.train.trainer as trainer

    real = trainer.regularize

    def twice(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)  # the second acts as the default: KeyboardInterrupt here
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "regularize", twice)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_run(workspace, tmp_path / "c"), progress=False)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_sizes_from_store_take_the_generator_sizes_from_the_manifest(workspace, tmp_path):
    """Own images: the config need not know the codebook, grid, class count or code size; the checkpoint and a
    resume see the values taken."""
    wrong = ("sizes_from_store=true", "generator.codebook_size=999", "generator.num_classes=7",
             "generator.num_tokens=9", "generator.align.code_dim=5", "steps=4")
    train(tiny_run(workspace, tmp_path / "a", *wrong), progress=False, until=2)
    saved = json.loads((tmp_path / "a" / "checkpoint" / "config.json").read_text())
    assert (saved["codebook_size"], saved["num_classes"], saved["num_tokens"], saved["align"]["code_dim"]) == (16, 3, 4, 8)
    train(tiny_run(workspace, tmp_path / "a", *wrong), resume=True, progress=False)  # the same recipe: resumes
    with pytest.raises(ValueError, match="store .* has codebook_size=16 but the config says generator.codebook_size=999"):
        train(tiny_run(workspace, tmp_path / "b", *wrong[1:]), progress=False)  # without it: refused, as before
