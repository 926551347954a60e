"""The CCA fine-tune (rear.train.cca): the loss by hand, the mismatched labels, gradients into the trained
copy only, exact resume, and guidance-free sampling of the result with one forward pass per token."""
import contextlib
import math

import pytest
import torch

from conftest import random_generator
from rear.config import CCAConfig
from rear.train.cca import cca_loss, cca_losses, contrast_labels
from rear.train.trainer import accumulate_gradients, train
import test_train
from test_train import tiny_run, weights

workspace = test_train.workspace  # the tiny store and tokenizer fixture


def test_the_loss_equals_a_hand_computation():
    r_pos, r_neg = torch.tensor([3.0, -1.0, 0.5]), torch.tensor([2.0, -4.0, 1.0])
    uncond = torch.tensor([False, False, True])
    log_sigmoid = lambda v: -math.log1p(math.exp(-v))  # noqa: E731
    for beta, lam in ((0.5, 4.0), (0.02, 1000.0), (1.0, 0.5)):
        positive = -sum(log_sigmoid(beta * r) for r in r_pos.tolist()) / 3
        negative = -(lam * log_sigmoid(-beta * 2.0) + lam * log_sigmoid(beta * 4.0)  # true negatives: pushed down
                     + 1.0 * log_sigmoid(beta * 1.0)) / 3  # the unconditional row's second half is a positive
        expected = (positive + negative) / max(lam, 1.0)
        got = cca_loss(r_pos, r_neg, uncond, CCAConfig(beta=beta, lam=lam)).item()
        assert got == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("classes", [2, 5])
def test_mismatched_labels_never_equal_the_true_ones(classes):
    labels = torch.arange(4000) % classes
    kept, negatives, uncond = contrast_labels(labels, classes, 0.0, torch.Generator().manual_seed(0))
    assert torch.equal(kept, labels) and not uncond.any()
    assert (negatives != labels).all() and negatives.min() >= 0 and negatives.max() < classes
    assert set(negatives[labels == 0].tolist()) == set(range(1, classes))  # every other class drawn
    kept, negatives, uncond = contrast_labels(labels, classes, 0.25, torch.Generator().manual_seed(1))
    assert 0.2 < uncond.float().mean() < 0.3
    assert (kept[uncond] == classes).all() and (negatives[uncond] == classes).all()
    assert (negatives[~uncond] != labels[~uncond]).all()


def test_sequence_logp_is_the_summed_token_log_likelihood(model):
    tokens, labels = torch.randint(0, 32, (3, 16)), torch.tensor([0, 4, 5])
    out = model.training_losses(tokens, labels, torch.zeros(3, 16, 8), sequence_logp=True)
    expected = model.logits(tokens, labels).log_softmax(-1).gather(-1, tokens[..., None])[..., 0].sum(1)
    assert torch.allclose(out["logp"], expected, atol=1e-5)


def test_gradients_reach_the_trained_copy_only():
    model, reference = random_generator(seed=0), random_generator(seed=0).requires_grad_(False)
    before = {k: v.clone() for k, v in reference.state_dict().items()}
    tokens, labels = torch.randint(0, 32, (4, 16)), torch.tensor([0, 1, 2, 3])
    kept, negatives, uncond = contrast_labels(labels, 5, 0.0, torch.Generator().manual_seed(0))
    losses = cca_losses(model, reference, tokens, kept, negatives, uncond, torch.randn(32, 8), CCAConfig(beta=0.5, lam=2.0),
                        1.0)
    sums = accumulate_gradients(model, 4, 2, contextlib.nullcontext, losses, torch.device("cpu"))
    assert torch.isfinite(sums).all()
    assert all(p.grad is None for p in reference.parameters())
    assert all(torch.equal(before[k], v) for k, v in reference.state_dict().items())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    # at the start (model == reference) r = 0 for every row: the loss is log 2 (1 + lam) / max(lam, 1)
    assert sums[0].item() == pytest.approx(math.log(2) * 3 / 2, rel=1e-4)


def cca_run(workspace, out, base, *overrides):
    return tiny_run(workspace, out, f"cca.init={base}", "noise.enabled=false", "label_dropout=0",
                    "cca.beta=0.5", "cca.lam=4", "sample.cfg_scale=1", "steps=4", *overrides)


@pytest.fixture(scope="module")
def base(workspace, tmp_path_factory):
    return train(tiny_run(workspace, tmp_path_factory.mktemp("base") / "run", "steps=2"), progress=False)


def test_the_fine_tune_starts_from_init_resumes_exactly_and_samples_guidance_free(workspace, base, tmp_path):
    from rear import Generator

    straight = train(cca_run(workspace, tmp_path / "a", base), progress=False)
    train(cca_run(workspace, tmp_path / "b", base), progress=False, until=2)
    resumed = train(cca_run(workspace, tmp_path / "b", base), resume=True, progress=False)
    a, b, start = weights(straight), weights(resumed), weights(base)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], start[k]) for k in a)  # it trained
    log = (tmp_path / "a" / "log.jsonl").read_text()
    assert '"cca"' in log and '"ce"' not in log

    model = Generator.from_pretrained(straight)
    assert model.generation.sample.cfg_scale == 1.0
    rows = []
    step = model.decode_step
    model.decode_step = lambda state, tokens, *rest: rows.append(len(tokens)) or step(state, tokens, *rest)
    images = model.generate(torch.tensor([0, 1, 2]))  # the saved settings: no guidance
    assert images.shape == (3, 4) and rows == [3] * 3  # one row per image, one forward per token after the first


def test_a_changed_init_or_a_noisy_context_is_refused(workspace, base, tmp_path):
    train(cca_run(workspace, tmp_path / "a", base), progress=False, until=2)
    other = train(tiny_run(workspace, tmp_path / "other", "steps=1", "seed=3"), progress=False)
    with pytest.raises(ValueError, match="init"):
        train(cca_run(workspace, tmp_path / "a", other), resume=True, progress=False)
    with pytest.raises(ValueError, match="noise.enabled=false and label_dropout=0"):
        cca_run(workspace, tmp_path / "c", base, "noise.enabled=true").validate()
