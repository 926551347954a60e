"""The study results in the docs are generated: each block is exactly what its committed results.json renders."""
from pathlib import Path

import pytest

from rear.config import StudyConfig, merge
from rear.study import report

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def docs(monkeypatch):
    monkeypatch.chdir(ROOT)  # the blocks name their folders relative to the repository root
    return {Path(name): (ROOT / name).read_text() for name in report.DOCS}


def test_every_study_block_is_what_its_ledger_renders(docs):
    assert any(report.blocks(text) for text in docs.values()), "no document holds a generated study block"
    for document, text in docs.items():
        root = report.link_root(document)
        for folder, config, block in report.blocks(text):
            assert block == report.rendered_block(folder, config, root), (
                f"{document}'s block for {folder} differs from its results.json: run `rear study {config} --report`")
        for folders, block in report.summary_blocks(text):
            assert block == report.rendered_summary(folders, root), (
                f"{document}'s summary table differs from the results.json files: run `rear study CONFIG --report`")


def test_every_study_config_has_a_block_and_a_summary_row(docs):
    folders = {Path(folder) for text in docs.values() for folder, _, _ in report.blocks(text)}
    summarized = {Path(folder) for text in docs.values() for names, _ in report.summary_blocks(text) for folder in names}
    for path in sorted((ROOT / "configs" / "fmnist").glob("study*.yaml")):
        results = Path(merge(StudyConfig, str(path)).results)
        assert results in folders, f"no document has a block for {results} ({path.name})"
        assert results in summarized, f"README.md's summary table has no row for {results} ({path.name})"


def test_the_cca_blocks_in_docs_are_what_their_results_render(monkeypatch):
    """docs/cca.md's tables are generated from results/fashion_mnist_cca*/results.json (issue 24)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("cca_fmnist", ROOT / "benchmarks" / "cca_fmnist.py")
    cca = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, cca)  # its dataclasses look their module up there
    spec.loader.exec_module(cca)
    held = cca.document_blocks(cca.DOC.read_text())
    rendered = cca.rendered_blocks()
    assert "table" in held, "docs/cca.md lost its generated table block"
    assert set(held) == set(rendered), f"docs/cca.md holds blocks {sorted(held)}, the results render {sorted(rendered)}"
    for name, block in held.items():
        assert block == rendered[name], f"docs/cca.md's {name} block differs: run `python benchmarks/cca_fmnist.py --report`"
