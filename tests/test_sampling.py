"""The KV-cache sampler: cache == recompute, CFG schedule, filtering, determinism."""
import math
import unittest.mock as mock

import pytest
import torch

from conftest import random_generator
from rear.config import SampleConfig
from rear.generator.cache import span_for
from rear.generator.sampling import (
    cfg_schedule,
    decode_one,
    filter_logits,
    generate_recompute,
    sample_tokens,
)


@pytest.mark.parametrize("static,table,spans", [(False, True, False), (False, False, False), (True, False, False),
                                                (True, False, True)],
                         ids=["eager", "eager-without-table", "static", "static-spans"])
def test_cached_logits_equal_full_recompute_at_every_step(model, static, table, spans, monkeypatch):
    """Eager steps (int index: the filled prefix, no mask; the RAR backbone's adaLN outputs from a
    precomputed table, or step by step where the table would be too large) and static ones (tensor
    index: the whole cache under a mask, or the fixed span that covers the position, as the compiled
    sampler runs; one adaLN row per sample) all give the teacher-forced logits."""
    from rear.generator import rar

    monkeypatch.setattr(rar, "MODULATION_TABLE_BYTES", rar.MODULATION_TABLE_BYTES if table else 0)
    tokens, labels = torch.randint(0, 32, (3, 16)), torch.tensor([0, 5, 0])
    full = model.logits(tokens, labels)  # [B, N, K]
    state = model.setup_caches(labels, static=static)
    if isinstance(state, rar.DecodeState):
        assert (state.modulation is not None) == (table and not static)
    with torch.no_grad():
        steps = [model.prefill(state)]
        for i in range(15):
            span = span_for(i + model.prefix_length, state.cache.length) if spans else None
            steps.append(decode_one(model, state, tokens[:, i], torch.tensor([i]) if static else i, span))
            if spans:  # four fixed lengths, the last the whole cache, each covering the new position
                assert state.cache.span in {-(-state.cache.length // 4) * k for k in (1, 2, 3)} | {state.cache.length}
                assert state.cache.span > i + model.prefix_length and state.cache.mask.shape == (1, state.cache.span)
    assert torch.allclose(torch.stack(steps, 1), full, atol=1e-5)


@pytest.mark.parametrize("static", [False, True], ids=["eager", "static"])
def test_cache_is_written_in_place_at_explicit_positions(model, static):
    labels = torch.tensor([1, 2])
    state = model.setup_caches(labels, static=static)
    buffers, P = list(state.cache.k), model.prefix_length
    assert state.cache.length == P + 15  # the prefix, t_0 .. t_14: t_15 is never read
    with torch.no_grad():
        model.prefill(state)
        # [L, B, H, T, hd] as bits: an eager cache starts uninitialised, and NaN != NaN
        before = torch.stack(state.cache.k).view(torch.int32)
        if static:
            assert before[:, :, :, P:].abs().sum() == 0
        decode_one(model, state, torch.tensor([3, 4]), torch.tensor([0]) if static else 0)
    assert all(a is b for a, b in zip(state.cache.k, buffers))
    k = torch.stack(state.cache.k).view(torch.int32)
    assert not torch.equal(k[:, :, :, P], before[:, :, :, P])  # written at t_0's position only
    assert torch.equal(k[:, :, :, : P], before[:, :, :, : P]) and torch.equal(k[:, :, :, P + 1 :], before[:, :, :, P + 1 :])
    if static:  # the query at t_0's position reads the whole cache through a mask
        assert state.cache.mask.tolist() == [[True] * (P + 1) + [False] * 14]
    else:  # a single query attends exactly the filled prefix
        assert state.cache.mask is None and state.cache.positions == slice(P, P + 1)


def test_cache_masks_a_block_of_new_positions_after_the_start():
    """A block of several new positions after position 0 is masked by rows of `allowed`."""
    from rear.generator.cache import KVCache

    cache = KVCache(1, 1, 1, 5, 2, dtype=torch.float32, device="cpu")
    cache.at(slice(0, 2))
    assert cache.causal and cache.mask is None
    cache.at(slice(2, 4))
    assert not cache.causal and cache.mask.tolist() == [[True, True, True, False], [True, True, True, True]]


@pytest.mark.parametrize("cfg_scale", [1.0, 4.0])
def test_cached_sampler_equals_recompute_sampler(model, cfg_scale):
    labels = torch.tensor([0, 1, 2, 3, 4, 5])
    kwargs = dict(cfg_scale=cfg_scale, cfg_power=2.5, temperature=1.3, top_p=0.9)
    a = model.generate(labels, rng=torch.Generator().manual_seed(3), **kwargs)
    b = generate_recompute(model, labels, SampleConfig(**kwargs), rng=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_seeded_determinism(model):
    labels = torch.tensor([0, 1, 2, 3])
    draw = lambda seed: model.generate(labels, cfg_scale=3.0, cfg_power=1.0, rng=torch.Generator().manual_seed(seed))
    assert torch.equal(draw(7), draw(7))
    assert not torch.equal(draw(7), draw(8))


def test_top_k_1_is_greedy(model):
    labels = torch.tensor([0, 3])
    tokens = model.generate(labels, cfg_scale=1.0, cfg_power=1.0, top_k=1, rng=torch.Generator().manual_seed(0))
    assert torch.equal(model.logits(tokens, labels).argmax(-1), tokens)


def test_cfg_scale_1_is_conditional_sampling(model):
    """cfg_scale=1 samples from the conditional logits alone, step by step."""
    labels, seed = torch.tensor([2, 4, 1]), 11
    tokens = model.generate(labels, cfg_scale=1.0, cfg_power=2.0, rng=torch.Generator().manual_seed(seed))
    rng = torch.Generator().manual_seed(seed)
    expected = torch.zeros_like(tokens)
    for i in range(16):
        logits = model.logits(expected, labels)[:, i]  # row i sees only tokens < i
        expected[:, i] = sample_tokens(logits, rng=rng)
    assert torch.equal(tokens, expected)


def test_draws_follow_the_probabilities_and_never_a_filtered_token():
    """The inverse-CDF draw: frequencies within 4 sigma of the softmax over 200,000 draws; tokens outside the
    top-k (probability exactly 0) never drawn, not even at u = 0 or just below the total."""
    logits = torch.tensor([[2.0, 0.0, -1.0, 1.0, -30.0]]).repeat(200_000, 1)
    drawn = sample_tokens(logits, rng=torch.Generator().manual_seed(0))
    p = logits[0].softmax(-1)
    counts = torch.bincount(drawn, minlength=5).double()
    assert ((counts - p * 200_000).abs() <= 4 * (200_000 * p * (1 - p)).sqrt() + 1).all(), (counts, p * 200_000)
    top2 = sample_tokens(logits, top_k=2, rng=torch.Generator().manual_seed(1))
    assert set(top2.unique().tolist()) == {0, 3}
    for u in (0.0, 1.0 - 2 ** -24):  # the ends of torch.rand's range
        with mock.patch.object(torch, "rand", lambda shape, **kw: torch.full(shape, u)):
            assert sample_tokens(torch.tensor([[-math.inf, 0.0, 0.0, -math.inf]])).item() in (1, 2)


def test_non_finite_logits_are_refused_not_sampled(model):
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="not finite"):
        model.generate(torch.tensor([0, 1]), cfg_scale=1.0)


def test_cfg_changes_samples(model):
    labels = torch.tensor([0, 1, 2, 3])
    a = model.generate(labels, cfg_scale=1.0, cfg_power=1.0, top_k=1)
    b = model.generate(labels, cfg_scale=8.0, cfg_power=1.0, top_k=1)
    assert not torch.equal(a, b)


def test_cfg_schedule_values():
    assert cfg_schedule(0, 256, 15.0, 2.5) == 1.0
    assert math.isclose(cfg_schedule(128, 256, 15.0, 1.0), 8.0)
    s = (1 - math.cos(math.pi * 0.5**2.5)) / 2
    assert math.isclose(cfg_schedule(128, 256, 15.0, 2.5), 14 * s + 1)
    assert math.isclose(cfg_schedule(256, 256, 15.0, 2.5), 15.0)


def test_filter_logits_top_k_and_top_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    keep = lambda x: torch.isfinite(x)[0].tolist()
    assert keep(filter_logits(logits, top_k=2)) == [True, True, False, False]
    assert keep(filter_logits(logits, top_p=0.45)) == [True, False, False, False]
    assert keep(filter_logits(logits, top_p=0.79)) == [True, True, False, False]
    assert keep(filter_logits(logits, top_p=0.81)) == [True, True, True, False]
    assert keep(filter_logits(logits, top_p=1.0)) == [True] * 4


def test_top_k_really_restricts_samples(model):
    labels = torch.zeros(64, dtype=torch.long)
    tokens = model.generate(labels, cfg_scale=1.0, cfg_power=1.0, top_k=2, rng=torch.Generator().manual_seed(0))
    first_logits = model.logits(tokens, labels)[:, 0]
    allowed = first_logits.topk(2, -1).indices
    assert (tokens[:, 0:1] == allowed).any(-1).all()
    free = model.generate(labels, cfg_scale=1.0, cfg_power=1.0, rng=torch.Generator().manual_seed(0))
    assert free[:, 0].unique().numel() > 2


@pytest.mark.parametrize("bad", [dict(temperature=0.0), dict(top_k=0), dict(top_p=0.0), dict(top_p=1.5)])
def test_bad_sampling_settings_are_refused(model, bad):
    with pytest.raises(ValueError):
        model.generate(torch.tensor([0]), cfg_scale=2.0, cfg_power=1.0, **bad)


def test_generate_restores_training_mode():
    model = random_generator().train()
    model.generate(torch.tensor([0]), cfg_scale=2.0, cfg_power=1.0)
    assert model.training


@pytest.mark.slow
def test_compiled_decode_step_matches_eager(model):
    """The compiled step (fullgraph, static shapes, as on GPUs) samples the same tokens as eager."""
    labels = torch.tensor([0, 1, 2, 3])
    a = model.generate(labels, cfg_scale=3.0, cfg_power=1.0, top_k=1, compiled=True)
    assert torch.equal(a, model.generate(labels, cfg_scale=3.0, cfg_power=1.0, top_k=1))


def test_on_token_sees_every_prefix_of_the_final_sample(model):
    labels, seen = torch.tensor([0, 3]), []
    tokens = model.generate(labels, cfg_scale=2.0, cfg_power=1.0, rng=torch.Generator().manual_seed(1),
                            on_token=lambda n, prefix: seen.append((n, prefix.clone())))
    assert [n for n, _ in seen] == list(range(1, 17))
    assert all(torch.equal(prefix, tokens[:, :n]) for n, prefix in seen)
    again = model.generate(labels, cfg_scale=2.0, cfg_power=1.0, rng=torch.Generator().manual_seed(1))
    assert torch.equal(tokens, again)  # watching does not change the draw


def test_generate_takes_the_saved_settings_then_the_keywords(model, tmp_path):
    """One front door: no SampleConfig means the checkpoint's generation_config.json (else the defaults);
    a keyword replaces one field; an unknown keyword is named."""
    from rear import Generator

    model.save_pretrained(tmp_path / "g", SampleConfig(cfg_scale=1.0, cfg_power=1.0, top_k=1))
    loaded = Generator.from_pretrained(tmp_path / "g")
    labels = torch.tensor([0, 1])
    greedy = model.generate(labels, SampleConfig(cfg_scale=1.0, cfg_power=1.0, top_k=1))
    assert torch.equal(loaded.generate(labels), greedy)
    assert torch.equal(loaded.generate(labels, cfg_scale=3.0), model.generate(labels, SampleConfig(3.0, 1.0, top_k=1)))
    with pytest.raises(TypeError, match="no setting \\['cfg'\\]"):
        loaded.generate(labels, cfg=3.0)
