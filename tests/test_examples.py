"""The shipped SOFC example structures: present, readable, with the right formulas."""

from __future__ import annotations

import pytest

from engine.io import read_structures
from engine.materials.examples import EXAMPLES, EXAMPLES_DIR, build, example_files, write_examples


def test_at_least_ten_examples_with_sources():
    assert len(EXAMPLES) >= 10
    for ex in EXAMPLES:
        assert ex.source and "Å" in ex.source, ex.key
        assert ex.a > 2.5


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.key)
def test_built_cell_has_formula_and_lattice(example):
    s = build(example)
    assert s.composition.reduced_formula == example.formula
    assert s.lattice.abc == pytest.approx((example.a,) * 3)
    assert s.is_ordered


def test_shipped_files_read_back_with_formulas():
    files = example_files()
    assert len(files) == len(EXAMPLES), "run `python -m engine.materials.examples` to regenerate"
    batch = read_structures(EXAMPLES_DIR)
    assert not batch.errors, batch.errors
    formulas = {item.id: item.structure.composition.reduced_formula for item in batch.items}
    for ex in EXAMPLES:
        assert formulas.get(ex.key) == ex.formula, (ex.key, formulas)
    readme = (EXAMPLES_DIR / "README.md").read_text()
    for ex in EXAMPLES:
        assert f"{ex.key}.cif" in readme


def test_regeneration_matches_shipped_files(tmp_path):
    written = write_examples(tmp_path)
    assert [p.name for p in written] == [f"{ex.key}.cif" for ex in EXAMPLES]
    for path in written:
        shipped = EXAMPLES_DIR / path.name
        assert shipped.read_text() == path.read_text(), f"{path.name} is stale: regenerate"
    assert (tmp_path / "README.md").read_text() == (EXAMPLES_DIR / "README.md").read_text()
