"""Loss curves from a run's log.jsonl."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_losses(log: Path, out: Path) -> Path:
    """Plot cross-entropy (a CCA fine-tune: its loss) and alignment loss against optimizer steps."""
    records = [json.loads(line) for line in Path(log).read_text().splitlines() if line.strip()]
    steps = [r["step"] for r in records]
    fig, (ce, align) = plt.subplots(1, 2, figsize=(9, 3.2))
    if records and "cca" in records[0]:
        ce.plot(steps, [r["cca"] for r in records])
        ce.set(xlabel="step", ylabel="CCA loss", title="CCA (guidance-free fine-tune)")
    else:
        ce.plot(steps, [r["ce"] for r in records])
        ce.set(xlabel="step", ylabel="next-token cross-entropy", title="CE (clean targets)")
    align.plot(steps, [r["align"] for r in records], color="tab:orange")
    align.set(xlabel="step", ylabel="-cos (encode + decode)", title="codebook alignment")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
