"""Sharing models: save_pretrained / from_pretrained, model cards, repo ids, settings that travel."""
import hashlib
import json
import sys
import types
from pathlib import Path

import pytest
import torch

from conftest import BACKBONE_PRESETS, random_generator, tiny_conv_vq
from rear import Generator, VQTokenizer
from rear.checkpoint import read_generation, save_generator
from rear.cli import main
from rear.config import SampleConfig, TrainConfig
from rear.hub import resolve
from test_alitok import tiny_alitok

OFFICIAL = Path(__file__).parent / "fixtures" / "official_tiny"


@pytest.mark.parametrize("preset", BACKBONE_PRESETS)
def test_generator_round_trip_with_card_and_settings(tmp_path, preset):
    model = random_generator(preset=preset)
    sample = SampleConfig(cfg_scale=4.0, cfg_power=1.5, temperature=0.9)
    model.save_pretrained(tmp_path / "g", sample, ["t-shirt", "trouser", "pullover", "dress", "coat"],
                          training={"steps": 123}, metrics={"FID": 9.75})
    again = Generator.from_pretrained(tmp_path / "g")
    assert type(again) is type(model)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    generation = read_generation(tmp_path / "g")
    assert generation.sample == sample and generation.class_names[1] == "trouser"
    card = (tmp_path / "g" / "README.md").read_text()
    for text in ("Generator.from_pretrained", "| steps | 123 |", "| FID | 9.75 |", "| cfg_scale | 4.0 |",
                 f'"backbone": "{model.config.backbone.name}"', "trouser"):
        assert text in card, text


def test_a_card_says_what_is_not_known(tmp_path):
    save_generator(random_generator(), tmp_path / "g")
    card = (tmp_path / "g" / "README.md").read_text()
    assert "Not recorded with these weights." in card and "None recorded with these weights." in card
    assert read_generation(tmp_path / "g") is None


@pytest.mark.parametrize("make", [tiny_conv_vq, tiny_alitok], ids=["conv_vq", "alitok"])
def test_tokenizer_round_trip(tmp_path, make):
    tokenizer = make().eval()
    tokenizer.save_pretrained(tmp_path / "t", metrics={"PSNR": 26.4})
    again = VQTokenizer.from_pretrained(tmp_path / "t")
    assert type(again) is type(tokenizer) and again.fingerprint() == tokenizer.fingerprint()
    images = torch.rand(2, tokenizer.channels, tokenizer.image_size, tokenizer.image_size)
    assert torch.equal(again.encode(images), tokenizer.encode(images))
    assert "| PSNR | 26.4 |" in (tmp_path / "t" / "README.md").read_text()


def test_titok_round_trip(tmp_path, monkeypatch):
    from rear.tokenizer.titok import VIT_SIZES, TiTok, TiTokConfig
    from test_titok import TINY_SIZES, seeded_state

    for name, size in TINY_SIZES.items():
        monkeypatch.setitem(VIT_SIZES, name, size)
    small, mini = TINY_SIZES.values()
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in TiTok(TiTokConfig(small, mini, 10, 64, 12, 64, 16)).state_dict().items()}
    tokenizer = TiTok(TiTokConfig(small, mini, 10, 64, 12, 64, 16))
    tokenizer.load_state_dict(seeded_state(shapes))
    tokenizer.save_pretrained(tmp_path / "t")
    again = VQTokenizer.from_pretrained(tmp_path / "t")
    assert again.config == tokenizer.config and again.fingerprint() == tokenizer.fingerprint()


def test_resolve_local_paths_and_repo_ids(tmp_path, monkeypatch):
    assert resolve(tmp_path) == tmp_path
    assert resolve("runs/a/b/c") == Path("runs/a/b/c")  # not a repo id: the loader names the missing path
    fake = types.ModuleType("huggingface_hub")
    fake.snapshot_download = lambda repo_id: str(tmp_path) if repo_id == "owner/model" else (_ for _ in ()).throw(
        OSError(f"offline: cannot reach {repo_id}"))
    monkeypatch.setitem(sys.modules, "huggingface_hub", fake)
    assert resolve("owner/model") == tmp_path
    with pytest.raises(FileNotFoundError, match="neither a local path nor a repo that could be downloaded.*offline"):
        resolve("owner/other")
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # not installed
    with pytest.raises(FileNotFoundError, match=r"install the hub extra"):
        resolve("owner/model")


def test_sample_uses_the_checkpoint_settings_unless_flags_override(tmp_path, capsys, monkeypatch):

    tiny_conv_vq().save_pretrained(tmp_path / "tok")
    model = random_generator(codebook_size=16, num_classes=2, num_tokens=4)
    model.save_pretrained(tmp_path / "g", SampleConfig(cfg_scale=7.0, cfg_power=0.5), ["a", "b"])
    used = []
    monkeypatch.setattr("rear.evaluation.samples.write_samples",
                        lambda model, tokenizer, out, n, sample, **kw: used.append(sample) or Path(out))
    main(["sample", str(tmp_path / "g"), "--tokenizer", str(tmp_path / "tok"), "--out", str(tmp_path / "s"),
          "--num-samples", "2"])
    assert (used[-1].cfg_scale, used[-1].cfg_power) == (7.0, 0.5)
    assert "cfg_scale 7.0" in capsys.readouterr().out
    main(["sample", str(tmp_path / "g"), "--tokenizer", str(tmp_path / "tok"), "--out", str(tmp_path / "s"),
          "--num-samples", "2", "--cfg-scale", "2"])
    assert (used[-1].cfg_scale, used[-1].cfg_power) == (2.0, 0.5)
    assert "from the command line: cfg_scale" in capsys.readouterr().out


def test_sample_compiles_by_default_only_on_a_gpu_and_refuses_emulated_bf16(tmp_path, capsys, monkeypatch):
    from rear import precision

    tiny_conv_vq().save_pretrained(tmp_path / "tok")
    random_generator(codebook_size=16, num_classes=2, num_tokens=4).save_pretrained(tmp_path / "g")
    used = []
    monkeypatch.setattr("rear.evaluation.samples.write_samples",
                        lambda model, tokenizer, out, n, sample, **kw: used.append((model, kw["compiled"])) or Path(out))
    args = ["sample", str(tmp_path / "g"), "--tokenizer", str(tmp_path / "tok"), "--out", str(tmp_path / "s"),
            "--num-samples", "2"]
    main(args)  # the tests run on a CPU: eager by default
    assert used[-1][1] is False and "eager one-token step (the default on cpu), float32" in capsys.readouterr().out
    main(args + ["--compile"])
    assert used[-1][1] is True and "compiled one-token step (--compile)" in capsys.readouterr().out
    if precision.native_bf16("cpu"):
        main(args + ["--bf16"])
        assert next(used[-1][0].parameters()).dtype == torch.bfloat16
    else:
        with pytest.raises(SystemExit):
            main(args + ["--bf16"])
        assert "--bf16: cpu has no native bfloat16" in capsys.readouterr().err
        assert not (tmp_path / "s").exists()


def test_convert_writes_the_release_sampling_settings(tmp_path):
    main(["convert", str(OFFICIAL / "model.safetensors"), str(OFFICIAL / "config.yaml"), str(tmp_path / "ckpt")])
    generation = read_generation(tmp_path / "ckpt")
    assert (generation.sample.cfg_scale, generation.sample.cfg_power) == (3.0, 2.5)  # the fixture YAML's


def test_alitok_sizes_get_the_release_settings():
    from rear.compat.alitok_ar import sample_for_alitok
    from rear.config import generator_preset

    assert (sample_for_alitok(generator_preset("alitok-b")).cfg_scale, sample_for_alitok(generator_preset("alitok-b")).cfg_power) == (16.0, 1.8)
    assert sample_for_alitok(generator_preset("alitok-l")).cfg_scale == 6.0
    assert sample_for_alitok(generator_preset("llama-tiny")) is None


def test_reproduce_writes_every_setting_beside_the_samples(tmp_path, monkeypatch, capsys):
    """`rear reproduce` on a tiny model and a tiny synthetic ADM-style reference batch."""
    import numpy as np

    from rear.metrics import statistics
    from rear.metrics.inception import InceptionFeatures, load_inception
    from rear.weights import state_fingerprint
    from test_inception import random_state

    torch.save(random_state(InceptionFeatures()), tmp_path / "inception.pth")
    tiny_conv_vq().save_pretrained(tmp_path / "tok")
    random_generator(codebook_size=16, num_classes=2, num_tokens=4).save_pretrained(
        tmp_path / "g", SampleConfig(cfg_scale=2.0, cfg_power=1.0), ["a", "b"])
    images = np.random.default_rng(0).integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    features = load_inception(tmp_path / "inception.pth").embed(torch.from_numpy(images).float().div(255).permute(0, 3, 1, 2))
    (mu, sigma), (mu_s, sigma_s) = statistics(features["pool"]), statistics(features["spatial"])
    np.savez(tmp_path / "ref.npz", mu=mu, sigma=sigma, mu_s=mu_s, sigma_s=sigma_s, arr_0=images)
    main(["reproduce", str(tmp_path / "g"), "--tokenizer", str(tmp_path / "tok"), "--reference", str(tmp_path / "ref.npz"),
          "--out", str(tmp_path / "r"), "--num-samples", "6", "--batch-size", "4", "--inception", str(tmp_path / "inception.pth")])
    record = json.loads((tmp_path / "r" / "reproduce.json").read_text())
    assert {"fid", "sfid", "inception_score", "precision", "recall"} <= set(record)
    assert record["sample"]["cfg_scale"] == 2.0 and record["num_samples"] == 6 and record["commit"]
    assert record["images_per_s"] > 0 and record["checkpoint"] == str(tmp_path / "g")
    # every input by content: the reference's bytes and the Inception's weights
    assert record["reference_sha256"] == hashlib.sha256((tmp_path / "ref.npz").read_bytes()).hexdigest()
    assert record["inception"] == state_fingerprint(load_inception(tmp_path / "inception.pth").state_dict())
    with np.load(tmp_path / "r" / "samples.npz") as samples:
        assert samples["arr_0"].shape == (6, 8, 8, 3)
    assert '"fid"' in capsys.readouterr().out


@pytest.mark.parametrize("preset", BACKBONE_PRESETS)
def test_a_reloaded_generator_saves_everything_it_carried(tmp_path, preset):
    """from_pretrained -> save_pretrained keeps the sampling settings, class names, training and metrics."""
    sample = SampleConfig(cfg_scale=3.0, cfg_power=1.5)
    random_generator(preset=preset).save_pretrained(tmp_path / "a", sample, ["a", "b", "c", "d", "e"],
                                                    training={"steps": 7}, metrics={"FID": 9.75})
    Generator.from_pretrained(tmp_path / "a").save_pretrained(tmp_path / "b")
    Generator.from_pretrained(tmp_path / "b").save_pretrained(tmp_path / "c")  # and again
    generation = read_generation(tmp_path / "c")
    assert generation.sample == sample and generation.class_names == ["a", "b", "c", "d", "e"]
    card = (tmp_path / "c" / "README.md").read_text()
    assert "| steps | 7 |" in card and "| FID | 9.75 |" in card and "| cfg_scale | 3.0 |" in card
    again = Generator.from_pretrained(tmp_path / "c")
    again.save_pretrained(tmp_path / "d", metrics={"FID": 8.5})  # what is given replaces what was carried
    card = (tmp_path / "d" / "README.md").read_text()
    assert "| FID | 8.5 |" in card and "| steps | 7 |" in card and read_generation(tmp_path / "d").sample == sample


def test_a_training_checkpoint_round_trip_keeps_its_record(tmp_path):
    """What `rear train` writes (settings, class names, training record) survives a re-save."""
    from rear.train.state import save_training

    model = random_generator(codebook_size=16, num_classes=2, num_tokens=4)
    config = TrainConfig(store="s", tokenizer="t", steps=9)
    optimizer = torch.optim.AdamW(model.parameters())
    save_training(tmp_path / "ck", model, None, optimizer, 9, [], config, class_names=["cat", "dog"])
    Generator.from_pretrained(tmp_path / "ck").save_pretrained(tmp_path / "out")
    assert read_generation(tmp_path / "out").class_names == ["cat", "dog"]
    assert "| steps | 9 of 9 |" in (tmp_path / "out" / "README.md").read_text()


def test_a_trained_tokenizer_keeps_its_metrics_on_re_save(tmp_path):
    from rear.config import TokenizerTrainConfig, merge
    from rear.train.tokenizer import train_tokenizer

    config = merge(TokenizerTrainConfig, {"out": str(tmp_path / "tok"), "steps": 2, "batch_size": 4, "eval_size": 4,
                                          "threads": 1, "model": {"codebook_size": 8, "code_dim": 4,
                                                                  "widths": [4, 4, 8], "res_blocks": [0, 0, 0],
                                                                  "groups": 2}})
    metrics = train_tokenizer(config, torch.rand(16, 1, 32, 32), torch.rand(4, 1, 32, 32), progress=False)
    assert f"| psnr | {metrics['psnr']} |" in (tmp_path / "tok" / "README.md").read_text()  # its own card
    VQTokenizer.from_pretrained(tmp_path / "tok").save_pretrained(tmp_path / "again")
    VQTokenizer.from_pretrained(tmp_path / "again").save_pretrained(tmp_path / "third")
    card = (tmp_path / "third" / "README.md").read_text()
    assert f"| psnr | {metrics['psnr']} |" in card and "| config |" in card
    assert VQTokenizer.from_pretrained(tmp_path / "third").card_info.metrics["psnr"] == metrics["psnr"]


def card_parts(folder):
    """(front matter as data, the python snippet) of a saved model's README.md."""
    import yaml

    text = (folder / "README.md").read_text()
    assert text.startswith("---\n")
    header = yaml.safe_load(text.split("---\n")[1])
    snippet = text.split("```python\n")[1].split("```")[0]
    return header, snippet


@pytest.mark.parametrize("preset", BACKBONE_PRESETS)
def test_the_generator_card_has_a_hub_header_and_a_snippet_that_runs(tmp_path, preset):

    tiny_conv_vq().save_pretrained(tmp_path / "tok")
    model = random_generator(preset=preset, codebook_size=16, num_classes=5, num_tokens=4)
    model.save_pretrained(tmp_path / "g", SampleConfig(cfg_scale=2.0, cfg_power=1.0),
                          training={"data": "fashion-mnist:train", "tokenizer": "ConvVQTokenizer: 16 codes"})
    header, snippet = card_parts(tmp_path / "g")
    assert header["library_name"] == "rear" and header["license"] == "mit" and "reAR" in header["tags"]
    assert header["pipeline_tag"] == "unconditional-image-generation"
    assert header["datasets"] == ["zalando-datasets/fashion_mnist"]
    assert len(snippet.strip().splitlines()) == 5 and "cfg_scale=2, cfg_power=1" in snippet
    scope = {}
    exec(snippet.replace("TOKENIZER_PATH_OR_REPO_ID", str(tmp_path / "tok")).replace("PATH_OR_REPO_ID", str(tmp_path / "g")),
         scope)
    assert scope["images"].shape == (3, 1, 8, 8) and 0 <= scope["images"].min() <= scope["images"].max() <= 1
    card = (tmp_path / "g" / "README.md").read_text()
    assert "Decode its tokens with ConvVQTokenizer: 16 codes" in card
    other = {"RAR": "rope_base", "LLAMA": "extra_position_rows"}[model.config.backbone.name]
    assert f'"{other}"' not in card and '"width"' in card  # only its own backbone's fields


def test_a_training_checkpoint_names_its_tokenizer_and_data(tmp_path):
    from rear.train.state import save_training

    manifest = {"source": "fashion-mnist:train", "codebook_size": 16, "code_dim": 8, "grid": [2, 2], "channels": 1,
                "image_size": 8, "tokenizer": {"class": "ConvVQTokenizer", "fingerprint": "ab" * 32}}
    model = random_generator(codebook_size=16, num_classes=2, num_tokens=4)
    save_training(tmp_path / "ck", model, None, torch.optim.AdamW(model.parameters()), 3, [],
                  TrainConfig(store="s", tokenizer="runs/tok", steps=3), 0, ["a", "b"], manifest)
    header, _ = card_parts(tmp_path / "ck")
    card = (tmp_path / "ck" / "README.md").read_text()
    assert header["datasets"] == ["zalando-datasets/fashion_mnist"]
    assert ("ConvVQTokenizer: 16 codes of 8 dims, 2 x 2 tokens, 1-channel 8 px images, weights sha256 abababababababab "
            "(runs/tok)") in card


def test_the_tokenizer_card_has_a_hub_header_and_a_snippet_that_runs(tmp_path):
    tokenizer = tiny_conv_vq().eval()
    tokenizer.save_pretrained(tmp_path / "t")
    header, snippet = card_parts(tmp_path / "t")
    assert header["library_name"] == "rear" and "vector-quantization" in header["tags"]
    scope = {}
    exec(snippet.replace("PATH_OR_REPO_ID", str(tmp_path / "t")), scope)
    assert scope["ids"].shape == (1, 4) and scope["images"].shape == (1, 1, 8, 8)
    assert tokenizer.fingerprint() in (tmp_path / "t" / "README.md").read_text()


def test_push_to_hub_uploads_the_saved_folder(tmp_path, monkeypatch):
    calls = []

    class FakeApi:
        def create_repo(self, repo_id, repo_type, private, exist_ok):
            calls.append(("create", repo_id, private))

        def upload_folder(self, repo_id, folder_path, repo_type, commit_message):
            calls.append(("upload", repo_id, sorted(p.name for p in Path(folder_path).iterdir())))

    fake = types.ModuleType("huggingface_hub")
    fake.HfApi = FakeApi
    monkeypatch.setitem(sys.modules, "huggingface_hub", fake)
    model = random_generator(codebook_size=16, num_classes=2, num_tokens=4)
    url = model.push_to_hub("me/tiny", sample=SampleConfig(cfg_scale=2.0), class_names=["a", "b"])
    assert url == "https://huggingface.co/me/tiny" and calls[0] == ("create", "me/tiny", False)
    assert calls[1] == ("upload", "me/tiny", ["README.md", "config.json", "generation_config.json", "model.safetensors"])
    tiny_conv_vq().push_to_hub("me/tok", private=True, metrics={"psnr": 20.0})
    assert calls[2] == ("create", "me/tok", True)
    assert calls[3] == ("upload", "me/tok", ["README.md", "card.json", "config.json", "model.safetensors"])
    with pytest.raises(ValueError, match="not a Hugging Face repo id"):
        model.push_to_hub("no-owner")
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(ImportError, match="hub extra"):
        model.push_to_hub("me/tiny")
