"""The README's study results are generated: each block is exactly what its committed results.json renders."""
from pathlib import Path

import pytest

from rear.config import StudyConfig, merge
from rear.study import report

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def readme(monkeypatch):
    monkeypatch.chdir(ROOT)  # the blocks name their folders relative to the repository root
    return (ROOT / "README.md").read_text()


def test_every_study_block_is_what_its_ledger_renders(readme):
    found = report.blocks(readme)
    assert found, "README.md holds no generated study block"
    for folder, config, block in found:
        assert block == report.rendered_block(folder, config), (
            f"README.md's block for {folder} differs from its results.json: run `rear study {config} --report`")


def test_every_study_config_has_a_block(readme):
    folders = {Path(folder) for folder, _, _ in report.blocks(readme)}
    for path in sorted((ROOT / "configs" / "fmnist").glob("study*.yaml")):
        results = Path(merge(StudyConfig, str(path)).results)
        assert results in folders, f"README.md has no block for {results} ({path.name})"
