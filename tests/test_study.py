"""`rear study` plumbing on a tiny config: arms, resume and skip, results.json, CFG on validation only."""
import json
import shutil

import numpy as np
import pytest

from rear.config import StudyConfig, merge
from rear.study import ARMS, pipeline
from rear.study.pipeline import quick_config, run_study, split_indices
from rear.study import report
from rear.study.plan import chosen_cfg, matched_grid, run_order, validation_grid
from test_fashion_mnist import fake_fashion_mnist


def tiny_study(root, data, *overrides):
    return merge(StudyConfig, {
        "out": str(root / "out"), "results": str(root / "results"), "data_dir": str(data), "threads": 1,
        "val_per_class": 2, "floor_per_class": 2, "train_per_class": 4,
        "seeds": {"ar": 2, "noisy": 1, "embed": 1, "rear": 2},
        "tokenizer": {"steps": 3, "batch_size": 8, "eval_size": 10,
                      "model": {"codebook_size": 16, "code_dim": 4, "widths": [8, 8, 16], "res_blocks": [0, 0, 1], "groups": 4}},
        "classifier": {"epochs": 1, "min_steps": 0, "batch_size": 16, "widths": [8, 16], "feature_dim": 16},
        "train": {"generator": {"codebook_size": 16, "num_classes": 10, "num_tokens": 64, "width": 32, "depth": 2,
                                "heads": 2, "extra_position_rows": 2, "extra_step_rows": 2,
                                "align": {"decode_layer": 1, "projection_dim": 16, "code_dim": 4}},
                  "noise": {"anneal_end": 3}, "optim": {"warmup_steps": 1}, "steps": 4, "batch_size": 8,
                  "grad_accumulation": 1, "bf16": False, "log_every": 1, "sample_every": 0, "samples_per_class": 0},
        "eval_fractions": [0.5, 1.0], "curve_samples": 20, "sfid": False, "cfg_grid": [1.0, 2.0], "val_samples": 20,
        "final_samples": 20, "sample_batch_size": 10, "diagnose_count": 10, "retok_samples": 10,
    }, list(overrides))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One complete tiny study (about 20 s), shared by the tests that only read it."""
    root = tmp_path_factory.mktemp("study")
    data = fake_fashion_mnist(root / "data", train=100, test=40)
    config = tiny_study(root, data)
    run_study(config)
    return root, data, config


def results(root):
    return json.loads((root / "results" / "results.json").read_text())


def test_results_schema_and_files(finished):
    root, _, config = finished
    data = results(root)
    assert set(data["arms"]) == set(ARMS) and data["complete"]
    for arm, runs in config.seeds.items():
        a = data["arms"][arm]
        for key in ("fid", "is", "precision", "recall", "class_acc", "retok_consistency", "correct_token_clean",
                    "correct_token_noisy"):
            assert len(a[key]) == runs and all(np.isfinite(a[key])), (arm, key)
        assert a["cfg_scale"] in config.cfg_grid
        assert a["curve"]["steps"] == [2, 4] and [len(row) for row in a["curve"]["fid"]] == [runs, runs]
        assert all(v is not None for row in a["curve"]["fid"] for v in row)
    assert np.isfinite(data["noise_floor_fid"]) and data["tokenizer"]["codes_used"] > 0
    assert set(data["tokenizer"]) == {"psnr", "rfid", "codes_used"} and 0 <= data["classifier"]["test_acc"] <= 1
    assert data["config"]["train"]["steps"] == 4 and data["cpu_hours"] > 0 and data["commit"]
    for name in ("table.md", "fid_vs_steps.png", "training_curves.png", "grid_ar.png", "grid_rear.png"):
        assert (root / "results" / name).is_file(), name
    assert "reAR" in (root / "results" / "table.md").read_text()


def test_arms_switch_only_their_regularizers(finished):
    root, _, config = finished
    study = pipeline.Study(config, None)
    for arm, noise, encode, decode in (("ar", False, False, False), ("noisy", True, False, False),
                                       ("embed", False, True, True), ("rear", True, True, True)):
        run = study.run_config(arm, 1)
        assert (run.noise.enabled, run.generator.align.encode, run.generator.align.decode) == (noise, encode, decode)
        assert run.seed == config.train.seed + 1 and run.steps == config.train.steps
        assert run.optim == config.train.optim and run.generator.width == config.train.generator.width


def test_cfg_is_chosen_on_the_validation_split_only(finished):
    root, _, config = finished
    data = results(root)
    for arm in ARMS:
        grid = {g: data["units"][f"{arm}/cfg_{g:g}"] for g in config.cfg_grid}
        assert all(r["reference"] == "validation" and r["num_samples"] == config.val_samples for r in grid.values())
        assert data["arms"][arm]["cfg_scale"] == min(grid, key=lambda g: (grid[g]["fid"], g))
        assert all(data["units"][f"{arm}/{k}/final"]["cfg_scale"] == data["arms"][arm]["cfg_scale"]
                   for k in range(config.seeds[arm]))
    # the validation statistics are those of exactly the validation images
    study = pipeline.Study(config, None)
    features = study.embed(study.real_images("train", "validation"))["pool"]
    assert np.allclose(np.load(root / "out" / "references" / "validation.npz")["pool"], features)


def test_split_is_disjoint_balanced_and_fixed():
    labels = np.arange(300) % 10
    config = merge(StudyConfig, {"val_per_class": 5, "floor_per_class": 6, "train_per_class": 0})
    parts = split_indices(labels, config)
    assert [len(parts[p]) for p in ("validation", "floor", "train")] == [50, 60, 190]
    assert len(np.unique(np.concatenate(list(parts.values())))) == 300
    assert (np.bincount(labels[parts["validation"]]) == 5).all()
    assert all((parts[p] == split_indices(labels, config)[p]).all() for p in parts)
    with pytest.raises(ValueError, match="do not fit"):
        split_indices(labels, merge(StudyConfig, {"val_per_class": 20, "floor_per_class": 10, "train_per_class": 1}))


def test_a_rerun_skips_everything(finished, monkeypatch):
    root, _, config = finished
    before = results(root)["units"]

    def refuse(*args, **kwargs):
        raise AssertionError("a finished unit ran again")

    monkeypatch.setattr(pipeline, "train", refuse)
    monkeypatch.setattr(pipeline, "write_samples", refuse)
    run_study(config)
    assert results(root)["units"] == before


def test_a_killed_study_resumes_where_it_stopped(tmp_path, monkeypatch):
    data = fake_fashion_mnist(tmp_path / "data", train=100, test=40)
    config = tiny_study(tmp_path, data, "seeds.ar=1", "seeds.rear=1")
    calls = {"n": 0}
    score = pipeline.Study.sample_and_score

    def killed_on_second_curve(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # ar run 0 has trained to step 4 and is killed while sampling
            raise KeyboardInterrupt
        return score(self, *args, **kwargs)

    monkeypatch.setattr(pipeline.Study, "sample_and_score", killed_on_second_curve)
    with pytest.raises(KeyboardInterrupt):
        run_study(config)
    first = results(tmp_path)["units"]
    assert "ar/0/step_2" in first and "ar/0/step_4" not in first
    assert results(tmp_path)["arms"]["ar"]["curve"]["fid"][0] == [first["ar/0/step_2"]["fid"]]  # the summary is current
    monkeypatch.setattr(pipeline.Study, "sample_and_score", score)
    run_study(config)
    after = results(tmp_path)
    assert after["complete"] and after["units"]["ar/0/step_2"] == first["ar/0/step_2"]
    steps = [json.loads(line)["step"] for line in (tmp_path / "out" / "runs" / "ar-0" / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]  # resumed from the step-4 checkpoint: no step trained twice
    assert after["units"]["ar/0/step_4"]["train_steps"] == 2


def test_a_lost_scratch_folder_costs_no_finished_unit(finished, tmp_path, monkeypatch):
    root, data, config = finished
    for name in ("results", "out"):
        shutil.copytree(root / name, tmp_path / name)
    shutil.rmtree(tmp_path / "out")  # a new checkout: runs/ is not committed, results/ is
    assert {"tokenizer", "classifier", "store-train", "store-test"} <= {p.name for p in (tmp_path / "results").iterdir()}
    before = results(tmp_path)["units"]

    def refuse(*args, **kwargs):
        raise AssertionError("a finished unit ran again")

    monkeypatch.setattr(pipeline, "train", refuse)
    monkeypatch.setattr(pipeline, "write_samples", refuse)
    run_study(tiny_study(tmp_path, data))
    assert results(tmp_path)["units"] == before
    shutil.rmtree(tmp_path / "results" / "classifier")
    with pytest.raises(FileNotFoundError, match="records the classifier but .*classifier is missing"):
        run_study(tiny_study(tmp_path, data))


def test_another_config_is_refused(finished, tmp_path):
    root, data, _ = finished
    shutil.copytree(root / "results", tmp_path / "results")
    with pytest.raises(ValueError, match="differs in train"):
        run_study(tiny_study(tmp_path, data, "train.steps=6"))


def test_quick_writes_only_to_scratch():
    config = quick_config(merge(StudyConfig, {"out": "runs/x", "results": "results/x"}))
    assert config.out == "runs/x-quick" and config.results.startswith("runs/x-quick/")
    assert config.train.steps < 100 and config.final_samples <= 500 and config.seeds["ar"] >= 2


def test_chosen_cfg_takes_the_lowest_validation_fid():
    class Fake(dict):
        pass

    ledger = Fake({"ar/cfg_1": {"fid": 5.0}, "ar/cfg_2": {"fid": 3.0}, "ar/cfg_3": {"fid": 3.0}})
    assert chosen_cfg(ledger, "ar", [1.0, 2.0, 3.0]) == 2.0


def test_a_second_study_shares_the_instruments_and_leaves_out_ablations(finished, tmp_path, monkeypatch):
    """study_llama.yaml's shape: another backbone, ablations at 0 runs, the first study's tokenizer and classifier."""
    root, data, _ = finished

    def refuse(*args, **kwargs):
        raise AssertionError("an instrument was rebuilt")

    for name in ("train_tokenizer", "train_classifier", "pretokenize"):
        monkeypatch.setattr(pipeline, name, refuse)
    config = tiny_study(tmp_path, data, f"instruments={root / 'results'}", "seeds.ar=1", "seeds.noisy=0",
                        "seeds.embed=0", "seeds.rear=1", "train.generator.backbone=LLAMA")
    run_study(config)
    data = results(tmp_path)
    assert set(data["arms"]) == {"ar", "rear"} and data["complete"]
    assert not any(key.startswith(("noisy/", "embed/")) for key in data["units"])
    assert data["tokenizer"] == results(root)["tokenizer"]
    assert not (tmp_path / "results" / "tokenizer").exists()
    assert "Llama backbone" in (tmp_path / "results" / "table.md").read_text()
    with pytest.raises(ValueError, match="plain AR and reAR need one or more"):
        run_study(tiny_study(tmp_path, data, "seeds.rear=0"))


def test_every_final_run_is_scored_at_every_cfg_of_the_grid(finished):
    """Matched guidance: results.json's arms carry matched_cfg {cfg: {metric: one value per seed}}."""
    root, _, config = finished
    data = results(root)
    assert data["matched_grid"] == config.cfg_grid
    for arm, runs in config.seeds.items():
        a = data["arms"][arm]
        assert set(a["matched_cfg"]) == {f"{g:g}" for g in config.cfg_grid}
        for g, point in a["matched_cfg"].items():
            for name in ("fid", "is", "precision", "recall", "class_acc", "retok_consistency"):
                assert len(point[name]) == runs and all(np.isfinite(point[name])), (arm, g, name)
        chosen = f"{a['cfg_scale']:g}"
        assert a["matched_cfg"][chosen]["fid"] == a["fid"]  # the final stands for the chosen CFG
        for k in range(runs):
            for g in config.cfg_grid:
                key = f"{arm}/{k}/test_cfg_{g:g}"
                assert (key in data["units"]) == (g != a["cfg_scale"]), key
                if g != a["cfg_scale"]:
                    unit = data["units"][key]
                    assert unit["num_samples"] == config.final_samples and unit["cfg_scale"] == g
        align = a["alignment"]
        assert len(align["implied_cosine"]) == runs and len(align["constant_cosine"]) == runs
        assert len(align["decode_head_cosine"]) == (runs if arm in ("embed", "rear") else 0)


def test_ablations_run_after_plain_ar_and_rear():
    config = merge(StudyConfig, {"seeds": {"ar": 2, "noisy": 1, "embed": 1, "rear": 3}})
    assert run_order(config) == [("ar", 0), ("rear", 0), ("ar", 1), ("rear", 1), ("rear", 2), ("noisy", 0), ("embed", 0)]


def test_the_grid_extends_until_the_minimum_is_interior():
    config = merge(StudyConfig, {"cfg_grid": [1.0, 2.0], "cfg_grid_extension": [3.0, 4.0, 5.0]})

    def scored(arm, fids):
        return {f"{arm}/cfg_{g:g}": {"fid": f} for g, f in fids.items()}

    assert validation_grid({}, "ar", config) == [1.0, 2.0]
    assert validation_grid(scored("ar", {1: 5.0, 2: 4.0}), "ar", config) == [1.0, 2.0, 3.0]  # minimum at the edge
    assert validation_grid(scored("ar", {1: 5.0, 2: 4.0, 3: 4.5}), "ar", config) == [1.0, 2.0, 3.0]  # interior now
    assert validation_grid(scored("ar", {1: 5.0, 2: 4.0, 3: 3.5, 4: 3.0, 5: 2.0}), "ar", config) == [1, 2, 3, 4, 5]
    assert validation_grid(scored("ar", {1: 3.0, 2: 4.0}), "ar", config) == [1.0, 2.0]
    units = {**scored("ar", {1: 3.0, 2: 4.0}), **scored("rear", {1: 5.0, 2: 4.0, 3: 3.0})}
    config = merge(config, {"seeds": {"ar": 1, "noisy": 0, "embed": 0, "rear": 1}})
    assert matched_grid(units, config) == [1.0, 2.0, 3.0, 4.0]  # rear's extension is scored for both arms


def test_report_rewrites_table_and_readme_from_results_json_alone(finished, tmp_path):
    root, _, config = finished
    shutil.copytree(root / "results", tmp_path / "results")
    folder = tmp_path / "results"
    (folder / "table.md").unlink()
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n\n{report.BEGIN.format(folder, 'x.yaml')}\nstale\n{report.END}\n\nafter\n"
                      f"{report.SUMMARY_BEGIN.format(f'{folder} {tmp_path}/none')}\nold\n{report.SUMMARY_END}\n")
    written = report.refresh(folder, "x.yaml", [readme, tmp_path / "absent.md"])
    assert "README.md" in written and (folder / "table.md").is_file()
    text = readme.read_text()
    assert "stale" not in text and "old" not in text and text.startswith("intro\n") and "\nafter\n" in text
    root = report.link_root(readme)
    assert report.summary_blocks(text)[0][1] == report.rendered_summary([str(folder), f"{tmp_path}/none"], root)
    assert "| not started |" in text and "| complete, 2/2 runs |" in text
    assert report.blocks(text)[0][2] == report.rendered_block(folder, "x.yaml", root)
    block = report.blocks(text)[0][2]
    assert "Matched guidance" in block and "sFID" not in block  # the tiny study computes no sFID
    assert (folder / "fid_vs_cfg.png").is_file() and (folder / "pr_frontier.png").is_file()


def fake_units(config, fid, seeds=3):
    """Records of a finished study whose every score comes from `fid(arm, k, cfg)` (other metrics fixed)."""
    units = {}
    for arm in ("ar", "rear"):
        for g in config.cfg_grid:
            units[f"{arm}/cfg_{g:g}"] = {"fid": fid(arm, 0, g)}
        chosen = min(config.cfg_grid, key=lambda g: (fid(arm, 0, g), g))
        for k in range(seeds):
            for g in config.cfg_grid:
                record = {"fid": fid(arm, k, g), "sfid": 50.0 + k, "inception_score": 4.0, "precision": 0.8,
                          "recall": 0.5 + 0.01 * k, "class_accuracy": 0.9, "retok_consistency": 0.4,
                          "fid_sampling_sd": 0.05, "cfg_scale": g}
                if g == chosen:
                    units[f"{arm}/{k}/final"] = {**record, "correct_token_clean": 0.15, "correct_token_noisy": 0.1}
                else:
                    units[f"{arm}/{k}/test_cfg_{g:g}"] = record
    return units


def test_the_verdict_reads_the_matched_differences():
    config = merge(StudyConfig, {"cfg_grid": [1.0, 2.0, 4.0], "seeds": {"ar": 3, "noisy": 0, "embed": 0, "rear": 3}})

    def fid(arm, k, g):  # reAR: 2 better at CFG 1 and 4, level at 2; it chooses 4 where plain AR chooses 2
        offset = {1.0: -2.0, 2.0: 0.01, 4.0: -2.0}[g] if arm == "rear" else 0.0
        return {1.0: 10.0, 2.0: 8.0, 4.0: 9.0}[g] + 0.1 * k + offset

    summary = report.summarize(fake_units(config, fid), config)
    assert summary["complete"] and summary["arms"]["rear"]["cfg_scale"] == 4.0 and summary["arms"]["ar"]["cfg_scale"] == 2.0
    text = "\n".join(report.verdict(summary, config))
    assert "- FID: reAR better at CFG 1, 4; worse at none; level at 2." in text
    assert "- sFID: reAR better at CFG none; worse at none; level at 1, 2, 4." in text
    assert "+0.01 ± 0.08 with both at plain AR's CFG and -2.00 ± 0.08 with both at reAR's" in text
    assert "-1.00 ± 0.08 with each arm at its own CFG (plain AR 2, reAR 4)" in text


def test_an_instrument_replaced_in_place_is_refused(finished, tmp_path):
    """The ledger knows its tokenizer and classifier by content: retraining one at the same path stops the study."""
    from rear.tokenizer.conv_vq import ConvVQTokenizer

    root, data, _ = finished
    for name in ("results", "out"):
        shutil.copytree(root / name, tmp_path / name)
    recorded = results(tmp_path)["units"]
    assert len(recorded["tokenizer"]["fingerprint"]) == 64 and len(recorded["classifier"]["fingerprint"]) == 64
    run_study(tiny_study(tmp_path, data))  # unchanged: nothing to do, nothing refused
    config = tiny_study(tmp_path, data)
    ConvVQTokenizer(config.tokenizer.model).save_pretrained(tmp_path / "results" / "tokenizer")  # retrained in place
    with pytest.raises(ValueError, match="tokenizer is not the tokenizer this study measured with"):
        run_study(config)


def test_a_classifier_on_disk_is_never_retrained_in_place(finished, tmp_path, monkeypatch):
    """A borrowed classifier (classifier_from, instruments) is only read, whatever this study's classifier
    section says; an own one whose config.json predates a newer field is reused; one of another recipe
    stops the study with its weights untouched."""
    from rear.study.ledger import Ledger

    root, data, _ = finished
    shutil.copytree(root / "results", tmp_path / "lent")
    lent = tmp_path / "lent" / "classifier"
    old = json.loads((lent / "config.json").read_text())
    assert old["seed"] == 0
    del old["seed"]  # as if written before that field existed: its default is what trained it
    (lent / "config.json").write_text(json.dumps(old))
    weights = (lent / "model.safetensors").read_bytes()

    def refuse(*args, **kwargs):
        raise AssertionError("a classifier on disk was trained again")

    monkeypatch.setattr(pipeline, "train_classifier", refuse)
    for borrow in (f"classifier_from={tmp_path / 'lent'}", f"instruments={tmp_path / 'lent'}"):
        config = tiny_study(tmp_path / borrow[:5], data, borrow, "classifier.epochs=3")
        made = pipeline.Study(config, Ledger(config.results, config)).make_classifier()
        assert made["test_acc"] == results(root)["units"]["classifier"]["test_acc"]
    shutil.copytree(lent, tmp_path / "own" / "results" / "classifier")  # own, with the old config.json
    config = tiny_study(tmp_path / "own", data)
    assert pipeline.Study(config, Ledger(config.results, config)).make_classifier()["test_acc"] > 0
    config = tiny_study(tmp_path / "own", data, "classifier.epochs=3")
    with pytest.raises(ValueError, match="trained with another classifier config"):
        pipeline.Study(config, Ledger(config.results, config)).make_classifier()
    empty = tiny_study(tmp_path / "none", data, f"classifier_from={tmp_path / 'nowhere'}")
    with pytest.raises(FileNotFoundError, match="no trained classifier to borrow"):
        pipeline.Study(empty, Ledger(empty.results, empty)).make_classifier()
    assert (lent / "model.safetensors").read_bytes() == weights
    assert (tmp_path / "own" / "results" / "classifier" / "model.safetensors").read_bytes() == weights
