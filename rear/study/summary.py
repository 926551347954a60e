"""A study's summary: per arm, every metric over seeds at the chosen CFG and at every CFG of the grid, read
from the unit records of results.json (what the tables, plots and the README's blocks are drawn from)."""
from __future__ import annotations

from rear.config import StudyConfig
from rear.study.plan import eval_steps, matched_grid, validation_grid

NAMES = {"ar": "plain AR", "noisy": "noisy context only", "embed": "embedding alignment only", "rear": "reAR"}
COLORS = {"ar": "tab:blue", "noisy": "tab:green", "embed": "tab:purple", "rear": "tab:red"}
# results.json name <- unit record name, in the order of the result tables
METRICS = {"fid": "fid", "sfid": "sfid", "kid": "kid", "is": "inception_score", "precision": "precision", "recall": "recall",
           "class_acc": "class_accuracy", "retok_consistency": "retok_consistency",
           "correct_token_clean": "correct_token_clean", "correct_token_noisy": "correct_token_noisy"}
MATCHED = ("fid", "sfid", "kid", "is", "precision", "recall", "class_acc", "retok_consistency")  # these depend on CFG
LOWER_IS_BETTER = {"fid", "sfid", "kid"}
ALIGNMENT = ("constant_cosine", "decode_head_cosine", "implied_cosine")
# how a metric is printed: title, percent, digits
SHOWN = {"fid": ("FID", False, 2), "sfid": ("sFID", False, 2), "kid": ("KID", False, 4), "is": ("IS", False, 2),
         "precision": ("precision", False, 3), "recall": ("recall", False, 3), "class_acc": ("class acc.", True, 1),
         "retok_consistency": ("re-tokenization", True, 1), "correct_token_clean": ("correct-token clean", True, 1),
         "correct_token_noisy": ("correct-token noisy", True, 1)}


def _values(records: list[dict], key: str) -> list[float]:
    """One value per record; a metric that only some records carry (KID, added during a study) is left out
    whole, never averaged over fewer runs than the others."""
    if any(key not in r for r in records):
        return []
    return [r[key] for r in records if r[key] is not None]


def _run_records(units: dict[str, dict], arm: str, k: int, cfg: float, chosen: float | None) -> dict | None:
    """The test-split record of run k at CFG `cfg`: its final at the chosen CFG, else its matched point."""
    return units.get(f"{arm}/{k}/final" if cfg == chosen else f"{arm}/{k}/test_cfg_{cfg:g}")


def summarize(units: dict[str, dict], config: StudyConfig) -> dict:
    """Per arm: one value per finished run of every metric, the matched-guidance grid, the alignment
    measurement, the validation grid and chosen CFG, the curves; then the reference figures."""
    steps, matched = eval_steps(config), (matched_grid(units, config) if config.matched_cfg else [])
    arms, complete = {}, True
    for arm, runs in config.seeds.items():
        if not runs:  # an ablation this study leaves out
            continue
        finals = [(k, units[f"{arm}/{k}/final"]) for k in range(runs) if f"{arm}/{k}/final" in units]
        val = validation_grid(units, arm, config)
        scored = [g for g in val if f"{arm}/cfg_{g:g}" in units]
        chosen = finals[0][1]["cfg_scale"] if finals else None
        points = {f"{g:g}": [r for k in range(runs) if (r := _run_records(units, arm, k, g, chosen))] for g in matched}
        aligned = [units[f"{arm}/{k}/alignment"] for k in range(runs) if f"{arm}/{k}/alignment" in units]
        arms[arm] = {
            "seeds": [config.train.seed + k for k, _ in finals],
            **{name: _values([r for _, r in finals], key) for name, key in METRICS.items()},
            "fid_sampling_sd": _values([r for _, r in finals], "fid_sampling_sd"),
            "cfg_scale": chosen,
            "cfg_grid_validation_fid": {f"{g:g}": units[f"{arm}/cfg_{g:g}"]["fid"] for g in scored},
            "cfg_interior": None if chosen is None else chosen != max(scored),
            "matched_cfg": {g: {name: _values(records, METRICS.get(name, name)) for name in (*MATCHED, "fid_sampling_sd")}
                            for g, records in points.items()},
            "alignment": {name: _values(aligned, name) for name in ALIGNMENT},
            "curve": {"steps": steps, "seeds": [config.train.seed + k for k in range(runs)],
                      "fid": [[units.get(f"{arm}/{k}/step_{s}", {}).get("fid") for k in range(runs)] for s in steps]},
        }
        complete &= len(finals) == runs and all(len(r) == runs for r in points.values())
    summary: dict = {"arms": arms, "complete": complete, "matched_grid": matched}
    if "references" in units:
        refs = units["references"]
        summary["noise_floor_fid"] = refs["noise_floor"]["fid"]
        summary["noise_floor_sfid"] = refs["noise_floor"].get("sfid")
        summary["training_images_fid"] = refs["training_images"]["fid"]
    if "tokenizer" in units:
        summary["tokenizer"] = {"psnr": units["tokenizer"]["psnr"], "codes_used": units["tokenizer"]["codes_used"],
                                "rfid": units.get("references", {}).get("tokenizer_rfid")}
    if "classifier" in units:
        summary["classifier"] = {"test_acc": units["classifier"]["test_acc"]}
    return summary


def describe(key: str, record: dict) -> str:
    """One line about a finished unit."""
    parts = [f"{record['seconds']:.0f} s"]
    if "fid" in record:
        parts.insert(0, f"FID {record['fid']:.2f} ({record['num_samples']} samples at CFG {record['cfg_scale']:g})")
    if "retok_consistency" in record:
        parts.insert(1, f"class acc {record['class_accuracy']:.1%}, re-tokenization {record['retok_consistency']:.1%}")
    if "correct_token_clean" in record:
        parts.insert(2, f"correct tokens {record['correct_token_clean']:.1%} clean / {record['correct_token_noisy']:.1%} noisy")
    if "implied_cosine" in record:
        head = "-" if record["decode_head_cosine"] is None else f"{record['decode_head_cosine']:.3f}"
        parts.insert(0, f"cosine to the next code: constant {record['constant_cosine']:.3f}, decode head {head}, "
                        f"softmax-implied {record['implied_cosine']:.3f}")
    if key == "references":
        parts.insert(0, f"noise floor FID {record['noise_floor']['fid']:.2f}, training images FID "
                        f"{record['training_images']['fid']:.2f}, tokenizer rFID {record['tokenizer_rfid']:.2f}")
    if key == "tokenizer":
        parts.insert(0, f"PSNR {record['psnr']:.2f} dB, {record['codes_used']} codes used")
    if key == "classifier":
        parts.insert(0, f"test accuracy {record['test_acc']:.2%}")
    return ", ".join(parts)
