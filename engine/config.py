"""Typed configuration: graph construction, model families, training, and where files live.

Every config is a pydantic v2 model with ``extra="forbid"`` so that a typo in a saved
``model.json`` or a CLI override fails loudly instead of being silently ignored.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ENGINE_VERSION = "0.1.0"
#: Version of the model-directory format written by :func:`engine.store.save_model`.
SCHEMA_VERSION = 1

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ASSETS_DIR = PROJECT_ROOT / "assets"


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GraphConfig(StrictModel):
    """How a crystal becomes a periodic neighbour graph (CGCNN defaults, SCIENCE.md §1).

    Attributes:
        cutoff: neighbour search radius in Å.
        max_neighbors: keep at most this many nearest neighbours per atom (12 in CGCNN).
        gaussian_start, gaussian_stop, gaussian_step: centres μ_k of the Gaussian distance
            expansion, in Å (0–8 Å in 0.2 Å steps gives 41 features).
        gaussian_width: σ of u_k(r) = exp(-(r - μ_k)² / σ²), in Å.
        isolated_atoms: what to do when an atom has no neighbour within the cutoff.
        pad_like_original: emulate the original CGCNN loader, which pads atoms with fewer than
            ``max_neighbors`` neighbours with fake edges to atom 0 at ``cutoff + 1`` Å. Only
            needed to reproduce the original pretrained models exactly.
    """

    cutoff: float = Field(8.0, gt=0, le=20)
    max_neighbors: int = Field(12, ge=1, le=64)
    gaussian_start: float = Field(0.0, ge=0)
    gaussian_stop: float = Field(8.0, gt=0)
    gaussian_step: float = Field(0.2, gt=0)
    gaussian_width: float = Field(0.2, gt=0)
    isolated_atoms: Literal["error", "warn", "ignore"] = "warn"
    pad_like_original: bool = False

    @model_validator(mode="after")
    def _check_range(self) -> GraphConfig:
        if self.gaussian_stop <= self.gaussian_start:
            raise ValueError(
                f"gaussian_stop={self.gaussian_stop} must exceed gaussian_start={self.gaussian_start}"
            )
        return self

    @property
    def n_gaussians(self) -> int:
        """Number of Gaussian centres μ_k (41 for the defaults)."""
        return int(round((self.gaussian_stop - self.gaussian_start) / self.gaussian_step)) + 1


class CGCNNConfig(StrictModel):
    """The crystal graph convolutional network of Xie & Grossman (SCIENCE.md §2).

    Attributes:
        atom_fea_len: width of the atom vectors v_i (and of the pooled crystal vector).
        n_conv: number of gated graph convolutions.
        h_fea_len: width of the dense layers after pooling.
        n_h: number of dense layers after pooling (1 in the paper).
        gate: use the sigmoid gate σ(z W_f + b_f); ``False`` fixes it at 1 (ablation).
        atom_features: ``cgcnn92`` uses the fixed 92-dim CGCNN element table; ``embedding``
            learns a vector per atomic number instead.
        dropout: dropout before the output layer.
    """

    name: Literal["cgcnn"] = "cgcnn"
    atom_fea_len: int = Field(64, ge=1)
    n_conv: int = Field(3, ge=1, le=12)
    h_fea_len: int = Field(128, ge=1)
    n_h: int = Field(1, ge=1, le=6)
    gate: bool = True
    atom_features: Literal["cgcnn92", "embedding"] = "cgcnn92"
    dropout: float = Field(0.0, ge=0, lt=1)


class SplitConfig(StrictModel):
    """How a labelled dataset is divided into train/validation/test.

    ``group`` (default) keeps every polymorph of a reduced formula in one split. ``column`` takes
    the split from a dataset column holding ``train``/``val``/``test``; when the column has no
    ``test`` rows, a test set is carved out of ``train`` by formula with ``test_fraction``.
    """

    kind: Literal["group", "random", "column"] = "group"
    val_fraction: float = Field(0.1, gt=0, lt=1)
    test_fraction: float = Field(0.1, ge=0, lt=1)
    seed: int = 0
    column: str | None = None

    @model_validator(mode="after")
    def _check(self) -> SplitConfig:
        if self.kind == "column" and not self.column:
            raise ValueError("split kind 'column' needs column=<name of the split column>")
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction must be below 1")
        return self


class TrainConfig(StrictModel):
    """Optimisation settings. Loss is MSE on the standardised target."""

    epochs: int = Field(100, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    scheduler: Literal["plateau", "cosine", "none"] = "cosine"
    plateau_factor: float = Field(0.5, gt=0, lt=1)
    plateau_patience: int = Field(10, ge=1)
    early_stopping_patience: int | None = Field(30, ge=1)
    seed: int = 0
    device: str = "auto"
    num_threads: int | None = None


ModelConfig = CGCNNConfig  # later families join this union, told apart by ``name``


def data_dir() -> Path | None:
    """The shared data directory: ``$CRYSTAL_SCREEN_DATA`` or ``../shared/data`` if it exists."""
    env = os.environ.get("CRYSTAL_SCREEN_DATA")
    if env:
        return Path(env).expanduser()
    default = PROJECT_ROOT.parent / "shared" / "data"
    return default if default.is_dir() else None


def home_dir() -> Path:
    """Per-user folder for trained models and jobs: ``$CRYSTAL_SCREEN_HOME`` or ``~/.crystal-screen``."""
    return Path(os.environ.get("CRYSTAL_SCREEN_HOME", Path.home() / ".crystal-screen")).expanduser()


def user_model_dir() -> Path:
    return home_dir() / "models"


def shipped_model_dir() -> Path:
    return ASSETS_DIR / "models"
