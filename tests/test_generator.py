"""The generator's structure: presets, causality, init, input checks, the training loss."""
import pytest
import torch

from conftest import BACKBONE_PRESETS, random_generator, tiny_config
from rear.config import PRESETS, generator_preset
from rear.generator import build_generator


@pytest.mark.parametrize(
    "name, expected",
    [("rear-s", 218_397_184), ("rear-b", 260_923_648), ("rear-l", 461_668_352)],
)
def test_preset_parameter_counts_match_the_release(name, expected):
    with torch.device("meta"):
        model = build_generator(generator_preset(name))
    assert model.num_parameters() == expected
    assert model.num_parameters(heads=True) > expected


@pytest.mark.parametrize("name", [n for n in PRESETS if n.endswith(("-cpu", "-tiny"))])
def test_small_presets_build_and_run(name):
    model = build_generator(generator_preset(name, codebook_size=16, num_classes=3, num_tokens=9)).eval()
    tokens, labels = torch.randint(0, 16, (2, 9)), torch.tensor([0, 3])
    assert model.logits(tokens, labels).shape == (2, 9, 16)


def test_the_interface_alone_is_refused_with_the_builder_named():
    """Generator(config) would be a module with no backbone whose state dict cannot be loaded back."""
    from rear import Generator

    with pytest.raises(TypeError, match="rear.build_generator"):
        Generator(tiny_config())


def test_any_grid_classes_and_codebook():
    model = random_generator(codebook_size=7, num_classes=11, num_tokens=12)
    assert model.logits(torch.randint(0, 7, (3, 12)), torch.tensor([0, 10, 11])).shape == (3, 12, 7)


@pytest.mark.parametrize("preset", BACKBONE_PRESETS)
def test_token_layout_rows(preset):
    model = build_generator(tiny_config(preset))
    assert model.embeddings.num_embeddings == 32 + 1 + 5 + 1
    assert model.mask_id == 32 and model.null_label == 5


def test_adaln_zero_init_makes_blocks_identity():
    model = build_generator(tiny_config())
    for block in model.blocks:
        assert block.adaLN_modulation[-1].weight.abs().sum() == 0
    assert model.adaln_before_head.adaLN_modulation[-1].weight.abs().sum() == 0
    assert model.cls_token.abs().sum() == 0
    assert model.pos_embed.abs().max() <= 2.0 and 0.01 < model.pos_embed.std() < 0.03
    x, condition, rows = model.embed(torch.randint(0, 32, (2, 5)), torch.tensor([1, 2]))
    out, _ = model.trunk(x, condition, rows)
    assert torch.equal(out, x)


def test_causality(model):
    tokens, labels = torch.randint(0, 32, (2, 16)), torch.tensor([1, 4])
    base = model.logits(tokens, labels)
    for t in (0, 7, 14):
        changed = tokens.clone()
        changed[:, t] = (changed[:, t] + 1) % 32
        logits = model.logits(changed, labels)
        # row i predicts token i from tokens < i: rows <= t cannot see token t
        assert torch.allclose(logits[:, : t + 1], base[:, : t + 1], atol=1e-6)
        assert not torch.allclose(logits[:, t + 1 :], base[:, t + 1 :], atol=1e-4)


def test_label_conditions_every_position(model):
    tokens = torch.randint(0, 32, (1, 16))
    a, b = model.logits(tokens, torch.tensor([0])), model.logits(tokens, torch.tensor([1]))
    assert (a - b).abs().amax(-1).min() > 1e-4


def test_target_aware_position_term():
    model = random_generator(num_tokens=4)
    table = model.position_table()
    tap = model.target_aware_pos_embed[0]
    assert torch.equal(table[0], model.pos_embed[0, 0])  # cls: no target term
    assert torch.equal(table[1], model.pos_embed[0, 1] + tap[2])  # class predicts t_0
    assert torch.equal(table[2], model.pos_embed[0, 2] + tap[3])  # t_0 predicts t_1
    assert torch.equal(table[5], model.pos_embed[0, 5])  # t_{N-1} predicts nothing


@pytest.mark.parametrize(
    "tokens, labels, message",
    [
        (torch.full((2, 16), 33), torch.tensor([0, 1]), "token ids must lie"),
        (torch.full((2, 16), -1), torch.tensor([0, 1]), "token ids must lie"),
        (torch.zeros(2, 16, dtype=torch.long), torch.tensor([0, 6]), "labels must lie"),
        (torch.zeros(2, 17, dtype=torch.long), torch.tensor([0, 1]), "this model takes 16"),
        (torch.zeros(2, 16), torch.tensor([0, 1]), "integer tensor"),
    ],
)
def test_out_of_range_inputs_are_refused(model, tokens, labels, message):
    with pytest.raises(ValueError, match=message):
        model.logits(tokens, labels)


def test_generate_refuses_bad_labels(model):
    with pytest.raises(ValueError, match="labels must lie"):
        model.generate(torch.tensor([9]), cfg_scale=2.0, cfg_power=1.0)


@pytest.mark.parametrize("preset", BACKBONE_PRESETS)
def test_training_losses_equal_logit_cross_entropy_without_alignment(preset):
    model = random_generator(preset=preset, align={"encode": False, "decode": False})
    tokens, labels = torch.randint(0, 32, (3, 16)), torch.tensor([0, 2, 5])
    losses = model.training_losses(tokens, labels, torch.randn(3, 16, 8))
    ce = torch.nn.functional.cross_entropy(model.logits(tokens, labels).flatten(0, 1), tokens.flatten())
    assert torch.allclose(losses["ce"], ce, atol=1e-5)
    assert losses["align"] == 0 and torch.equal(losses["total"], losses["ce"])


def test_training_losses_read_the_context_but_score_clean_targets(model):
    tokens, labels, codes = torch.randint(0, 32, (2, 16)), torch.tensor([0, 1]), torch.randn(2, 16, 8)
    context = tokens.clone()
    context[:, 3] = model.mask_id
    clean, noisy = model.training_losses(tokens, labels, codes), model.training_losses(tokens, labels, codes, context)
    assert not torch.allclose(clean["ce"], noisy["ce"])
    assert torch.allclose(noisy["total"], noisy["ce"] + noisy["align"])


def test_training_losses_backpropagate_into_heads(model):
    model.train()
    losses = model.training_losses(torch.randint(0, 32, (2, 16)), torch.tensor([0, 1]), torch.randn(2, 16, 8))
    losses["total"].backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    assert grads["encode_align_mlp.0.weight"].abs().sum() > 0
    assert grads["decode_align_mlp.4.weight"].abs().sum() > 0
    output = "lm_head.weight" if "lm_head.weight" in grads else "output.weight"
    assert grads[output].abs().sum() > 0


def test_code_vectors_shape_is_checked(model):
    with pytest.raises(ValueError, match="code_vectors must be"):
        model.training_losses(torch.randint(0, 32, (2, 16)), torch.tensor([0, 1]), torch.randn(2, 16, 9))


@pytest.mark.parametrize("preset", BACKBONE_PRESETS)
def test_alignment_heads_read_the_documented_positions(preset):
    """encode head: the state holding t_i; decode head: the state whose logits predict t_i."""
    model = random_generator(preset=preset, align={"encode_layer": 0, "decode_layer": 1})
    tokens, labels = torch.randint(0, 32, (2, 16)), torch.tensor([0, 3])
    _, captured = model.forward_context(tokens, labels, capture=(0, 1))
    P = model.prefix_length
    assert captured[0].shape[1] == P + 16
    changed = tokens.clone()
    changed[:, 5] = (changed[:, 5] + 1) % 32
    _, after = model.forward_context(changed, labels, capture=(0, 1))
    holding, predicting = model.holding_states(captured[0], 16), model.predicting_states(captured[1], 16)
    # t_5 is first seen at the position holding it; the position predicting t_5 has not seen it
    assert torch.allclose(model.holding_states(after[0], 16)[:, :5], holding[:, :5])
    assert not torch.allclose(model.holding_states(after[0], 16)[:, 5], holding[:, 5])
    assert torch.allclose(model.predicting_states(after[1], 16)[:, :6], predicting[:, :6])
    assert not torch.allclose(model.predicting_states(after[1], 16)[:, 6], predicting[:, 6])
    # the logits of t_i come from the predicting positions
    logits, _ = model.forward_context(tokens, labels)
    assert torch.allclose(logits[:, :16], model.logits(tokens, labels), atol=1e-5)


# ---------------------------------------------------------------- the CPU dropout mask
def test_dropout_is_identity_in_eval_and_at_zero():
    from rear.generator.dropout import dropout

    x = torch.randn(8, 5)
    assert dropout(x, 0.3, training=False) is x and dropout(x, 0.0, training=True) is x
    assert torch.equal(dropout(x, 1.0, training=True), torch.zeros_like(x))


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_keeps_one_minus_p_and_scales_like_aten(p):
    from rear.generator.dropout import dropout

    x = torch.rand(1001, 999) + 1  # odd element count: the last int64 of draws is half used
    y = dropout(x, p, training=True)
    kept = y != 0
    assert torch.allclose(y[kept], x[kept] / (1 - p))
    n = x.numel()
    assert abs(kept.sum().item() - n * (1 - p)) < 5 * (n * p * (1 - p)) ** 0.5
    # the mask is not all one pattern: rows and columns drop at the same rate
    assert abs(kept[:, 0].float().mean().item() - (1 - p)) < 0.07
    assert abs(kept[0].float().mean().item() - (1 - p)) < 0.07


def test_dropout_gradient_uses_the_forward_mask_and_keeps_dtype():
    from rear.generator.dropout import dropout

    x = torch.randn(64, 33, requires_grad=True)
    y = dropout(x, 0.25, training=True)
    y.sum().backward()
    assert torch.equal(x.grad, (y != 0).float() / 0.75)
    assert dropout(torch.randn(16, 4, dtype=torch.bfloat16), 0.2, training=True).dtype == torch.bfloat16


def test_dropout_masks_follow_the_seed():
    from rear.generator.dropout import keep_mask

    torch.manual_seed(3)
    a = keep_mask(torch.Size([7, 9]), 0.4)
    torch.manual_seed(3)
    assert torch.equal(a, keep_mask(torch.Size([7, 9]), 0.4))
    assert not torch.equal(a, keep_mask(torch.Size([7, 9]), 0.4))
