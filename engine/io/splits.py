"""Train/validation/test splits of a :class:`~engine.io.datasets.LabelledDataset`.

:func:`split_dataset` splits by reduced formula (``group``: polymorphs stay together), by row
(``random``) or by a column naming each row's part (``column``); all seeded and reproducible.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from engine.core.config import SplitConfig

if TYPE_CHECKING:
    from engine.io.datasets import LabelledDataset

__all__ = ["split_dataset"]

_SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}


def _group_split(
    groups: np.ndarray,
    val_fraction: float,
    test_fraction: float,
    rng: np.random.Generator,
    what: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split rows so that each group lands whole in one part. Returns row positions."""
    n = len(groups)
    uniq, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    n_groups = len(uniq)
    need_val, need_test = val_fraction > 0, test_fraction > 0
    required = 1 + int(need_val) + int(need_test)
    if n_groups < required:
        parts = "train/val/test" if required == 3 else ("train/val" if need_val else "train/test")
        raise ValueError(
            f"too small to split: {_count(n, n_groups, what)}; a {parts} split "
            f"needs at least {required}"
            + ("" if what == "rows" else " (kind='random' splits rows instead of formulas)")
        )
    order = rng.permutation(n_groups)
    target = {"test": test_fraction * n, "val": val_fraction * n}
    assign = np.empty(n_groups, dtype=object)
    count = {"train": 0, "val": 0, "test": 0}
    for g in order:
        size = int(counts[g])
        part = "train"
        for cand in ("test", "val"):
            # add the group when that brings the part's row count closer to its target
            if target[cand] > 0 and count[cand] + size / 2 < target[cand]:
                part = cand
                break
        assign[g] = part
        count[part] += size

    rank = np.empty(n_groups, dtype=np.int64)
    rank[order] = np.arange(n_groups)

    def members(part: str) -> list[int]:
        return [int(g) for g in order if assign[g] == part]

    def fill(part: str, donors: tuple[str, ...]) -> None:
        if members(part):
            return
        for donor in sorted(donors, key=lambda d: -count[d]):
            pool = members(donor)
            if len(pool) >= 2:
                g = min(pool, key=lambda x: (counts[x], rank[x]))
                assign[g] = part
                count[part] += int(counts[g])
                count[donor] -= int(counts[g])
                return

    if need_test:
        fill("test", ("train", "val"))
    if need_val:
        fill("val", ("train", "test"))
    fill("train", ("val", "test"))

    row_part = assign[inverse]
    out = tuple(
        np.flatnonzero(row_part == part).astype(np.int64) for part in ("train", "val", "test")
    )
    if len(out[0]) == 0 or (need_val and len(out[1]) == 0) or (need_test and len(out[2]) == 0):
        raise ValueError(f"too small to split: {_count(n, n_groups, what)}")
    return out  # type: ignore[return-value]


def _count(n: int, n_groups: int, what: str) -> str:
    return f"{n} rows" if what == "rows" else f"{n_groups} distinct {what} in {n} rows"


def split_dataset(dataset: LabelledDataset, config: SplitConfig) -> dict[str, np.ndarray]:
    """Split a dataset into train/validation/test row positions.

    * ``group``: seeded split by reduced formula; all polymorphs of a formula share one part and
      the val/test parts hold about ``val_fraction``/``test_fraction`` of the rows.
    * ``random``: seeded split of rows.
    * ``column``: the part named in ``config.column`` (``train``/``val``/``test``, any case;
      ``validation``/``valid``/``dev`` count as ``val``). Rows with another or no value are left
      out of all parts, so the union need not cover every row. If no row says ``test`` (and
      ``test_fraction > 0``) a test set of about ``test_fraction`` of the train rows is carved out
      of train by formula; likewise for ``val`` with ``val_fraction``.

    With ``config.refit`` the validation rows are also in ``train`` (the final fit).

    Returns:
        ``{"train", "val", "test"}`` → sorted int64 row positions, disjoint but for ``refit``.
        The same config gives the same split every time. ``test`` is empty when
        ``test_fraction`` is 0.

    Raises:
        ValueError: when the dataset is too small to give every requested part a row.
        KeyError: when the split column does not exist.
    """
    rng = np.random.default_rng(config.seed)
    n = len(dataset)
    if n == 0:
        raise ValueError("cannot split an empty dataset")
    if config.kind == "group":
        groups = dataset.table["formula"].astype(str).to_numpy()
        train, val, test = _group_split(
            groups, config.val_fraction, config.test_fraction, rng, "reduced formulas"
        )
    elif config.kind == "random":
        train, val, test = _group_split(
            np.arange(n), config.val_fraction, config.test_fraction, rng, "rows"
        )
    else:
        train, val, test = _column_split(dataset, config, rng)
    if config.refit:
        train = np.concatenate([train, val])
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


def _column_split(
    dataset: LabelledDataset, config: SplitConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    col = config.column
    if col not in dataset.table.columns:
        raise KeyError(
            f"split column {col!r} not in dataset {dataset.name!r}; columns: "
            + ", ".join(map(str, dataset.table.columns))
        )
    labels = dataset.table[col].map(
        lambda v: _SPLIT_NAMES.get(str(v).strip().lower()) if pd.notna(v) else None
    )
    parts = {
        p: np.flatnonzero((labels == p).to_numpy()).astype(np.int64) for p in _SPLIT_NAMES.values()
    }
    train, val, test = parts["train"], parts["val"], parts["test"]
    if len(train) == 0:
        raise ValueError(f"no row of column {col!r} says 'train'")
    formulas = dataset.table["formula"].astype(str).to_numpy()
    if len(test) == 0 and config.test_fraction > 0:
        try:
            keep, _, carved = _group_split(
                formulas[train], 0.0, config.test_fraction, rng, "reduced formulas"
            )
        except ValueError as exc:
            raise ValueError(f"no row says 'test'; carving one from train: {exc}") from exc
        train, test = train[keep], train[carved]
    if len(val) == 0:
        try:
            keep, carved, _ = _group_split(
                formulas[train], config.val_fraction, 0.0, rng, "reduced formulas"
            )
        except ValueError as exc:
            raise ValueError(f"no row says 'val'; carving one from train: {exc}") from exc
        train, val = train[keep], train[carved]
    return train, val, test
