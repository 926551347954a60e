"""table.md of a study: the results, the differences at each arm's CFG and at matched CFGs, the verdict,
the alignment, curve and CFG-selection tables, as Markdown lines from a summary (rear.study.summary)."""
from __future__ import annotations

import math

import numpy as np

from rear.config import StudyConfig
from rear.study.summary import ALIGNMENT, LOWER_IS_BETTER, MATCHED, METRICS, NAMES, SHOWN

# ------------------------------------------------------------------ numbers
def spread(values: list[float], percent: bool = False, digits: int = 2) -> str:
    """'mean ± std (min-max)' over seeds, or the one value."""
    if not values:
        return "-"
    scale, unit = (100, "%") if percent else (1, "")
    v = np.asarray(values, dtype=float) * scale
    if len(v) == 1:
        return f"{v[0]:.{digits}f}{unit}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}{unit} ({v.min():.{digits}f}-{v.max():.{digits}f})"


def difference(a: list[float], b: list[float]) -> tuple[float, float]:
    """(mean(a) - mean(b), its standard error from the seed spreads; nan when a side has one run)."""
    if not a or not b:
        return math.nan, math.nan
    va = np.var(a, ddof=1) / len(a) if len(a) > 1 else math.nan
    vb = np.var(b, ddof=1) / len(b) if len(b) > 1 else math.nan
    return float(np.mean(a) - np.mean(b)), float(math.sqrt(va + vb))


def shown_difference(a: list[float], b: list[float], name: str) -> str:
    """'+1.23 ± 0.45' in the metric's unit, '-' when a side is empty."""
    diff, error = difference(a, b)
    if math.isnan(diff):
        return "-"
    _, percent, digits = SHOWN[name]
    scale, unit = (100, " pt") if percent else (1, "")
    err = "" if math.isnan(error) else f" ± {error * scale:.{digits}f}"
    return f"{diff * scale:+.{digits}f}{err}{unit}"


def worse(name: str, diff: float) -> bool:
    """Is a difference reAR - plain AR of this metric a change for the worse?"""
    return diff > 0 if name in LOWER_IS_BETTER else diff < 0


def column_order(arms: dict) -> list[str]:
    """The metrics, those on which reAR's mean is worse than plain AR's first (the table order within)."""
    names = [n for n in METRICS if arms.get("ar", {}).get(n) or arms.get("rear", {}).get(n)]
    if not (arms.get("ar", {}).get("fid") and arms.get("rear", {}).get("fid")):
        return names
    against = [n for n in names if arms["rear"][n] and arms["ar"][n]
               and worse(n, np.mean(arms["rear"][n]) - np.mean(arms["ar"][n]))]
    return against + [n for n in names if n not in against]


def _cell(a: dict, name: str) -> str:
    _, percent, digits = SHOWN[name]
    return spread(a[name], percent, digits)


def md_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def md_rule(n: int) -> str:
    return "|" + " --- |" * n


def results_table(summary: dict, config: StudyConfig) -> list[str]:
    """Every metric of every arm at its chosen CFG, and reAR's differences from plain AR."""
    arms, names = summary["arms"], column_order(summary["arms"])
    against = [SHOWN[n][0] for n in names if "ar" in arms and "rear" in arms and arms["ar"][n] and arms["rear"][n]
               and worse(n, np.mean(arms["rear"][n]) - np.mean(arms["ar"][n]))]
    lines = [f"At each arm's chosen CFG: {config.final_samples} class-balanced samples per run, domain-classifier "
             "features, against the Fashion-MNIST test images; cells mean ± std over seeds (min-max). Columns: the "
             "metrics on which reAR's mean is worse than plain AR's first"
             + (f" (here: {', '.join(against)})" if against else " (here: none)")
             + f"; correct-token noisy at corruption bound r = {config.diagnose_noise:g}.", "",
             md_row(["arm", "runs", "CFG"] + [SHOWN[n][0] for n in names]), md_rule(3 + len(names))]
    for arm, a in arms.items():
        cfg = "-" if a["cfg_scale"] is None else f"{a['cfg_scale']:g}" + ("" if a["cfg_interior"] else " (edge)")
        lines.append(md_row([NAMES[arm], f"{len(a['fid'])}/{config.seeds[arm]}", cfg] + [_cell(a, n) for n in names]))
    noise = [v for a in arms.values() for v in a["fid_sampling_sd"]]
    seeds = {arm: np.std(a["fid"], ddof=1) for arm, a in arms.items() if len(a["fid"]) > 1}
    if noise:
        lines += ["", f"FID's own sampling error at {config.final_samples} samples (standard deviation over 20 bootstrap "
                  f"resamples of each run's samples): {np.mean(noise):.3f} on average (max {max(noise):.3f})"
                  + (", against a seed-to-seed standard deviation of " + ", ".join(
                      f"{v:.3f} ({NAMES[arm]})" for arm, v in seeds.items()) if seeds else "")
                  + (("" if not seeds else ": smaller than the seed spread, so the seeds, not the sample count, set the "
                      "error of the differences below" if np.mean(noise) < min(seeds.values()) else
                      ": not smaller than the seed spread, so more samples per point would sharpen the comparison")
                     + ".")]
    base = arms["ar"]
    rows = [arm for arm, a in arms.items() if arm != "ar" and a["fid"]]
    if base["fid"] and rows:
        lines += ["", "Each arm minus plain AR at their chosen CFGs (difference of means ± its standard error from the "
                  "seed spreads; percentage points for rates), and the ratio of mean FIDs (the paper's claim: <= 0.75):",
                  "", md_row(["arm"] + [SHOWN[n][0] for n in names] + ["FID ratio"]), md_rule(2 + len(names))]
        for arm in rows:
            lines.append(md_row([NAMES[arm]] + [shown_difference(arms[arm][n], base[n], n) for n in names]
                              + [f"{np.mean(arms[arm]['fid']) / np.mean(base['fid']):.3f}"]))
    return lines


def references_line(summary: dict, config: StudyConfig) -> list[str]:
    if "noise_floor_fid" not in summary:
        return []
    C = config.classifier.num_classes
    sfid = summary.get("noise_floor_sfid")
    return ["", f"Reference points: noise floor ({config.floor_per_class * C} held-out real training images against "
            f"the test images) FID **{summary['noise_floor_fid']:.2f}**"
            + (f", sFID **{sfid:.2f}**" if sfid is not None else "")
            + f"; the generator's {config.train_per_class * C or 'all'} training images against the test images FID "
            f"{summary['training_images_fid']:.2f} (what a model that memorised them would score); tokenizer "
            f"({summary['tokenizer']['psnr']:.2f} dB held-out PSNR, {summary['tokenizer']['codes_used']} of "
            f"{config.tokenizer.model.codebook_size} codes used, {config.tokenizer.model.code_dim}-dim codes) "
            f"reconstructions of the test images FID {summary['tokenizer']['rfid']:.2f} (its ceiling); classifier "
            f"test accuracy {summary['classifier']['test_acc']:.2%}."]


def any_matched(summary: dict) -> bool:
    """Is any CFG scored for both plain AR and reAR (a matched comparison to show)?"""
    arms = summary["arms"]
    return "ar" in arms and "rear" in arms and any(
        arms["ar"]["matched_cfg"][g]["fid"] and arms["rear"]["matched_cfg"][g]["fid"] for g in arms["ar"]["matched_cfg"])


def matched_difference_table(summary: dict, config: StudyConfig) -> list[str]:
    """reAR - plain AR at every CFG of the matched grid: what guidance does not explain."""
    arms = summary["arms"]
    if not any_matched(summary):
        return []
    names = [n for n in column_order(arms) if n in MATCHED]
    lines = [f"Matched guidance: reAR minus plain AR at the same CFG ({config.final_samples} samples per run and CFG, "
             "test split; difference of seed means ± its standard error; percentage points for rates), and the "
             "ratio of mean FIDs. The arms' chosen CFGs: plain AR "
             f"{arms['ar']['cfg_scale'] if arms['ar']['cfg_scale'] is not None else '-'}, reAR "
             f"{arms['rear']['cfg_scale'] if arms['rear']['cfg_scale'] is not None else '-'}.", "",
             md_row(["CFG", "runs (AR / reAR)"] + [SHOWN[n][0] for n in names] + ["FID ratio"]), md_rule(3 + len(names))]
    for g in summary["matched_grid"]:
        ar, rear = arms["ar"]["matched_cfg"][f"{g:g}"], arms["rear"]["matched_cfg"][f"{g:g}"]
        ratio = f"{np.mean(rear['fid']) / np.mean(ar['fid']):.3f}" if ar["fid"] and rear["fid"] else "-"
        lines.append(md_row([f"{g:g}", f"{len(ar['fid'])} / {len(rear['fid'])}"]
                          + [shown_difference(rear[n], ar[n], n) for n in names] + [ratio]))
    return lines


def verdict(summary: dict, config: StudyConfig) -> list[str]:
    """The matched-guidance answer in words, computed: for each metric, the CFGs at which reAR is better
    or worse than plain AR by more than two standard errors, and the FID gap at each arm's CFG."""
    arms = summary["arms"]
    if not any_matched(summary):
        return []
    ar, rear = arms["ar"], arms["rear"]
    header = ["At equal guidance (the matched table above; a difference counts when it exceeds two standard errors, "
              "which needs two or more seeds per arm):", ""]
    bullets: list[str] = []
    for name in [n for n in column_order(arms) if n in MATCHED]:
        better, worse_at, level = [], [], []
        for g in summary["matched_grid"]:
            a, b = ar["matched_cfg"][f"{g:g}"][name], rear["matched_cfg"][f"{g:g}"][name]
            diff, error = difference(b, a)
            if math.isnan(diff) or math.isnan(error):
                continue
            (level if abs(diff) <= 2 * error else worse_at if worse(name, diff) else better).append(f"{g:g}")
        if better or worse_at or level:
            bullets.append(f"- {SHOWN[name][0]}: reAR better at CFG {', '.join(better) or 'none'}; worse at "
                         f"{', '.join(worse_at) or 'none'}; level at {', '.join(level) or 'none'}.")
    own, g_ar, g_rear = difference(rear["fid"], ar["fid"]), ar["cfg_scale"], rear["cfg_scale"]
    at = {g: ar["matched_cfg"].get(f"{g:g}") and rear["matched_cfg"].get(f"{g:g}") for g in (g_ar, g_rear) if g is not None}
    guidance: list[str] = []
    if not math.isnan(own[0]) and all(at.values()) and len(at) == len({g_ar, g_rear}):
        gaps = {g: shown_difference(rear["matched_cfg"][f"{g:g}"]["fid"], ar["matched_cfg"][f"{g:g}"]["fid"], "fid")
                for g in at}
        guidance = [f"How much of reAR's FID gain is guidance: reAR - plain AR is {shown_difference(rear['fid'], ar['fid'], 'fid')} "
                  f"with each arm at its own CFG (plain AR {g_ar:g}, reAR {g_rear:g}), {gaps[g_ar]} with both at "
                  f"plain AR's CFG and {gaps[g_rear]} with both at reAR's."]
    return (header + bullets if bullets else []) + ([""] if bullets and guidance else []) + guidance


def matched_means_tables(summary: dict, config: StudyConfig) -> list[str]:
    """Per metric, each arm's mean ± std over seeds at every CFG of the matched grid."""
    arms, lines = summary["arms"], []
    if not any_matched(summary):
        return lines
    for n in [n for n in column_order(arms) if n in MATCHED]:
        title, percent, digits = SHOWN[n]
        lines += ["", f"{title} at every CFG (test split, {config.final_samples} samples per run and CFG):", "",
                  md_row(["CFG"] + [NAMES[a] for a in arms]), md_rule(1 + len(arms))]
        for g in summary["matched_grid"]:
            lines.append(md_row([f"{g:g}"] + [spread(a["matched_cfg"][f"{g:g}"][n], percent, digits) for a in arms.values()]))
    return lines


def alignment_table(summary: dict, config: StudyConfig) -> list[str]:
    arms = summary["arms"]
    if not any(a["alignment"]["implied_cosine"] for a in arms.values()):
        return []
    lines = [f"What the alignment loss could teach beyond the logits (`rear.evaluation.diagnose.alignment_information`,"
             f" {config.diagnose_count} class-balanced test images, clean context): mean cosine to the next token's "
             f"{config.tokenizer.model.code_dim}-dim code of a constant per position (the best in hindsight), of the "
             "decode alignment head, and of the direction the softmax implies (sum_k p_k e_k); mean ± std over seeds, "
             "the last column per seed. A head no closer than the implied direction adds nothing the cross-entropy "
             "did not already teach.", "",
             md_row(["arm", "constant", "decode head", "softmax-implied", "head - implied"]), md_rule(5)]
    for arm, a in arms.items():
        al = a["alignment"]
        gap = spread([h - i for h, i in zip(al["decode_head_cosine"], al["implied_cosine"])], digits=3) \
            if al["decode_head_cosine"] else "-"
        lines.append(md_row([NAMES[arm]] + [spread(al[n], digits=3) for n in ALIGNMENT] + [gap]))
    return lines


def curve_table(summary: dict, config: StudyConfig) -> list[str]:
    arms = summary["arms"]
    steps = next(iter(arms.values()))["curve"]["steps"]
    lines = [f"FID against training steps ({config.curve_samples} samples at CFG {config.train.sample.cfg_scale:g}, "
             "against the test images; mean over the finished seeds):", "",
             md_row(["arm"] + [f"step {s}" for s in steps]), md_rule(1 + len(steps))]
    for arm, a in arms.items():
        lines.append(md_row([NAMES[arm]] + [spread([v for v in row if v is not None]) for row in a["curve"]["fid"]]))
    return lines


def selection_table(summary: dict, config: StudyConfig) -> list[str]:
    arms = summary["arms"]
    grid = sorted({float(g) for a in arms.values() for g in a["cfg_grid_validation_fid"]} | set(config.cfg_grid))
    extension = f", extended by {config.cfg_grid_extension} while an arm's minimum sits at its largest CFG" \
        if config.cfg_grid_extension else ""
    lines = [f"CFG selection: FID of {config.val_samples} samples of each arm's first run against the "
             f"{config.val_per_class * config.classifier.num_classes} validation images (held out from the training "
             f"images; never the test split); grid {config.cfg_grid}{extension}:", "",
             md_row(["arm"] + [f"CFG {g:g}" for g in grid] + ["chosen"]), md_rule(2 + len(grid))]
    for arm, a in arms.items():
        fids = a["cfg_grid_validation_fid"]
        chosen = "-" if a["cfg_scale"] is None else f"{a['cfg_scale']:g}" + ("" if a["cfg_interior"] else " (edge)")
        lines.append(md_row([NAMES[arm]] + [f"{fids[f'{g:g}']:.2f}" if f"{g:g}" in fids else "-" for g in grid] + [chosen]))
    return lines


def title(config: StudyConfig) -> str:
    backbone = {"rar": "RAR", "llama": "Llama"}[config.train.generator.backbone.value]
    return f"Fashion-MNIST study, {backbone} backbone, {config.tokenizer.model.code_dim}-dim codes"


def table(summary: dict, config: StudyConfig, cpu_hours: float, commit) -> str:
    """table.md: everything the study measured."""
    status = "complete" if summary["complete"] else "**unfinished** (figures below cover the finished units only)"
    lines = [f"# {title(config)} (`rear study`)", "", f"Status: {status}; {cpu_hours:.2f} CPU-hours so far; commit {commit}.", ""]
    lines += results_table(summary, config) + references_line(summary, config)
    for part in (matched_difference_table, verdict, matched_means_tables, alignment_table, curve_table, selection_table):
        block = part(summary, config)
        lines += ([""] if block and block[0] else []) + block
    return "\n".join(lines) + "\n"
