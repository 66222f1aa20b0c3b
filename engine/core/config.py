"""Typed configuration: graph construction, model families, training, and where files live.

Every config is a pydantic v2 model with ``extra="forbid"`` so that a typo in a saved
``model.json`` or a CLI override fails loudly instead of being silently ignored.

Size: about 480 lines: one config class per model family, each documenting its fields, and the
union of them all, which read best in one place.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

ENGINE_VERSION = "0.1.0"
#: Version of the model-directory format written by :func:`engine.store.directory.save_model`.
SCHEMA_VERSION = 1

PROJECT_ROOT = Path(__file__).resolve().parents[2]
#: Shipped models and SOFC examples: ``assets/`` of a checkout (``engine/_assets`` links to it),
#: or the copy inside an installed wheel.
ASSETS_DIR = (Path(__file__).resolve().parents[1] / "_assets").resolve()
if not ASSETS_DIR.is_dir():  # a checkout made without symbolic links
    ASSETS_DIR = PROJECT_ROOT / "assets"


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GraphConfig(StrictModel):
    """How a crystal becomes a periodic neighbour graph (CGCNN defaults).

    CGCNN: Xie & Grossman, PRL 120, 145301 (2018).

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
    """The crystal graph convolutional network of Xie & Grossman (PRL 120, 145301 (2018)).

    Attributes:
        atom_fea_len: width of the atom vectors v_i (and of the pooled crystal vector).
        n_conv: number of gated graph convolutions.
        h_fea_len: width of the dense layers after pooling.
        n_h: number of dense layers after pooling (1 in the paper).
        gate: use the sigmoid gate σ(z W_f + b_f); ``False`` fixes it at 1 (the gate ablation:
            CLI ``train --no-gate``, the Train page's "gate" switch). It stays family
            ``cgcnn``; the card's ``model.gate`` tells the two apart.
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

    ``refit``: the final fit (issue 16): the validation rows are trained on as well (``train``
    holds them too; ``val`` stays for the record, its metrics then in-sample) and test stays
    held out. Nothing is left to choose the epoch or fit σ on, so a refit needs
    ``TrainConfig.stop_after`` (the epoch count chosen on validation by the same run without
    refit) and saves no σ or domain.
    """

    kind: Literal["group", "random", "column"] = "group"
    val_fraction: float = Field(0.1, gt=0, lt=1)
    test_fraction: float = Field(0.1, ge=0, lt=1)
    seed: int = 0
    column: str | None = None
    refit: bool = False

    @model_validator(mode="after")
    def _check(self) -> SplitConfig:
        if self.kind == "column" and not self.column:
            raise ValueError("split kind 'column' needs column=<name of the split column>")
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction must be below 1")
        return self


class TrainConfig(StrictModel):
    """Optimisation settings.

    Attributes:
        target_transform: ``none`` or ``log`` (train on ln y, strictly positive targets only;
            predictions and every reported MAE are transformed back to the target unit). Saved
            in the card's normaliser, so prediction back-transforms. With several targets
            (``multitask``) it applies to the primary target only.
        loss: ``mse``, ``l1`` or ``huber`` on the standardised (transformed) target.
        huber_delta: where the Huber loss turns from quadratic to linear, in standardised units
            (0.1 std of the transformed training target).
        init_from: transfer learning: a model directory whose weights initialise every
            parameter and buffer of this model with the same name and shape (e.g. the graph
            trunk of a CGCNN pretrained on another property); the rest (a head of another
            width) keep their fresh initialisation. Its graph settings must equal this run's.
            See :func:`engine.training.transfer.transfer_weights`.
        freeze: parameter-name prefixes kept fixed during training, e.g.
            ``("embedding.", "convs.")``, the CGCNN graph trunk (a frozen trunk: only the head
            trains; batch-norm running statistics still follow the new data).
        stop_after: end training after this epoch of the ``epochs``-long schedule and keep its
            weights (no best-epoch choice, no early stopping); used by a refit
            (``SplitConfig.refit``) with the epoch count chosen on validation.
    """

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
    target_transform: Literal["none", "log"] = "none"
    loss: Literal["mse", "l1", "huber"] = "mse"
    huber_delta: float = Field(0.1, gt=0)
    init_from: str | None = None
    freeze: tuple[str, ...] = ()
    stop_after: int | None = Field(None, ge=1)


class EarlyFusionConfig(StrictModel):
    """Early fusion: Magpie descriptor (Ward et al. 2016) ‖ pooled CGCNN vector → MLP.

    The composition part is the 132-feature Magpie vector standardised with the training split's
    mean and std (kept in the weights); the graph part is the pooled CGCNN vector passed through a
    LayerNorm, so both parts enter the MLP with entries of order one. The MLP is
    ``fc1_len → fc2_len → 1`` with softplus and dropout.

    Attributes:
        atom_fea_len, n_conv, gate, atom_features: the CGCNN graph branch, as in
            :class:`CGCNNConfig`.
        fc1_len, fc2_len: widths of the two hidden layers of the fusion MLP (128 and 64).
        dropout: dropout after each hidden layer (0.2).
    """

    name: Literal["early-fusion"] = "early-fusion"
    atom_fea_len: int = Field(64, ge=1, description="Width of the graph branch's atom vectors.")
    n_conv: int = Field(3, ge=1, le=12, description="Gated graph convolutions.")
    gate: bool = True
    atom_features: Literal["cgcnn92", "embedding"] = "cgcnn92"
    fc1_len: int = Field(
        128,
        ge=1,
        description="Width of the first fusion-MLP layer (its output "
        "is the vector shown on the embedding map).",
    )
    fc2_len: int = Field(64, ge=1, description="Width of the second fusion-MLP layer.")
    dropout: float = Field(0.2, ge=0, lt=1, description="Dropout after each fusion-MLP layer.")


class AttentionFusionConfig(StrictModel):
    """Attention fusion: per-material softmax weights over two branch vectors (Magpie, CGCNN).

    The standardised Magpie vector is projected to the graph width; each branch vector (projected
    composition, pooled CGCNN vector; both LayerNorm-ed so neither wins by scale alone) is scored
    by its own linear layer, a softmax over the two scores gives w_comp + w_graph = 1, and the
    dense head predicts from w_comp·c + w_graph·g.

    Attributes:
        atom_fea_len, n_conv, gate, atom_features: the CGCNN graph branch, as in
            :class:`CGCNNConfig`; ``atom_fea_len`` is also the width of the fused vector.
        h_fea_len: width of the dense layer of the head.
        dropout: dropout before the output layer.
    """

    name: Literal["attention-fusion"] = "attention-fusion"
    atom_fea_len: int = Field(
        64,
        ge=1,
        description="Width of the graph vector; the composition is projected to the same width.",
    )
    n_conv: int = Field(3, ge=1, le=12, description="Gated graph convolutions.")
    gate: bool = True
    atom_features: Literal["cgcnn92", "embedding"] = "cgcnn92"
    h_fea_len: int = Field(128, ge=1, description="Width of the dense layer of the head.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout before the output layer.")


class RFMagpieConfig(StrictModel):
    """Random forest on the Magpie descriptor alone: the composition-only baseline.

    Trained with scikit-learn (seeded by ``TrainConfig.seed``), saved with skops. It ignores the
    graph settings and the optimiser settings of ``TrainConfig``.

    Attributes:
        n_estimators: number of trees.
        max_depth: maximum tree depth (``None``: grow until leaves are pure).
        min_samples_leaf: minimum training rows in a leaf.
        max_features: share of the 132 features tried at each split (1.0: all, as in
            scikit-learn's regression default).
    """

    name: Literal["rf-magpie"] = "rf-magpie"
    n_estimators: int = Field(100, ge=1, le=5000, description="Number of trees.")
    max_depth: int | None = Field(
        30, ge=1, description="Maximum tree depth (0 or none: unlimited)."
    )
    min_samples_leaf: int = Field(1, ge=1, description="Minimum training rows in a leaf.")
    max_features: float = Field(
        1.0, gt=0, le=1, description="Share of the 132 Magpie features tried at each split."
    )


class LateFusionConfig(StrictModel):
    """Late fusion: ŷ = α·ŷ_RF + (1 − α)·ŷ_CGCNN (random forest on Magpie features, CGCNN).

    A CGCNN (the fields shared with :class:`CGCNNConfig`) is trained first, then a random forest
    on Magpie (the ``rf_`` fields); α is the grid value (0, ``alpha_step``, …, 1) with the lowest
    MAE on the validation split, never the training split. α is stored in the weights and in the
    model card (``fitted``).
    """

    name: Literal["late-fusion"] = "late-fusion"
    atom_fea_len: int = Field(64, ge=1)
    n_conv: int = Field(3, ge=1, le=12)
    h_fea_len: int = Field(128, ge=1)
    n_h: int = Field(1, ge=1, le=6)
    gate: bool = True
    atom_features: Literal["cgcnn92", "embedding"] = "cgcnn92"
    dropout: float = Field(0.0, ge=0, lt=1)
    rf_n_estimators: int = Field(100, ge=1, le=5000, description="Trees of the random forest.")
    rf_max_depth: int | None = Field(
        30, ge=1, description="Depth of the random forest's trees (0 or none: unlimited)."
    )
    alpha_step: float = Field(
        0.05,
        gt=0,
        le=0.5,
        description="Step of the α grid searched on the validation split (0 to 1).",
    )

    def cgcnn(self) -> CGCNNConfig:
        """The config of the CGCNN half."""
        fields = set(CGCNNConfig.model_fields) - {"name"}
        return CGCNNConfig(**{k: v for k, v in self.model_dump().items() if k in fields})

    def forest(self) -> RFMagpieConfig:
        """The config of the random-forest half."""
        return RFMagpieConfig(n_estimators=self.rf_n_estimators, max_depth=self.rf_max_depth)

    def alpha_grid(self) -> list[float]:
        """α values tried on the validation split: 0, step, …, 1 (1 always included)."""
        n = round(1.0 / self.alpha_step)
        grid = [round(i * self.alpha_step, 10) for i in range(n + 1) if i * self.alpha_step < 1]
        return [*grid, 1.0] if grid[-1] != 1.0 else grid


class MultitaskConfig(StrictModel):
    """Multi-task CGCNN (MEGNet-style, Chen et al. 2019): one shared trunk, one head per target.

    Each target k is standardised with its own training mean μ_k and std σ_k (one normaliser per
    task in the model card). A row may lack some targets: a missing label is masked out of the
    loss and the row still trains the other tasks. With L_k the loss of task k
    (``TrainConfig.loss``, MSE by default) on its standardised scale, over the rows of the batch
    that have a label for it:

    * ``learned`` (default): loss = Σ_k exp(−s_k)·L_k + s_k, one learned log-variance s_k per
      task (initialised at 0, saved in ``weights.pt`` as ``log_vars``). A task the trunk fits
      badly raises its s_k and so gets a smaller weight exp(−s_k); the + s_k term stops every
      weight from going to 0.
    * ``inverse-scale``: loss = (1/K)·Σ_k L_k with fixed weights. Since L_k = MSE_k(raw)/σ_k²,
      this is the raw-unit MSE of each task weighted by 1/(K·σ_k²): inverse-variance weighting,
      so no target dominates through the size of its unit. (``log_vars`` exist but stay 0.)

    A task with no label in a batch adds nothing to that batch's loss (neither term).

    Attributes:
        atom_fea_len, n_conv, gate, atom_features: the shared trunk, as in :class:`CGCNNConfig`.
        h_fea_len, n_h, dropout: each task's head, as CGCNN's dense head (pooled vector →
            h_fea_len, n_h softplus layers, dropout → 1).
        weighting: ``learned`` or ``inverse-scale`` (above).
        n_tasks: number of targets; set by ``train()`` from its list of targets.
    """

    name: Literal["multitask"] = "multitask"
    atom_fea_len: int = Field(64, ge=1, description="Width of the shared trunk's atom vectors.")
    n_conv: int = Field(3, ge=1, le=12, description="Gated graph convolutions of the trunk.")
    h_fea_len: int = Field(128, ge=1, description="Width of each task head's dense layers.")
    n_h: int = Field(1, ge=1, le=6, description="Dense layers per task head.")
    gate: bool = True
    atom_features: Literal["cgcnn92", "embedding"] = "cgcnn92"
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout before each head's output.")
    weighting: Literal["learned", "inverse-scale"] = Field(
        "learned",
        description="Task-loss weighting: learned log-variances s_k "
        "(Σ exp(−s_k)·L_k + s_k) or fixed inverse-scale (mean of the standardised MSEs).",
    )
    n_tasks: int = Field(
        1, ge=1, le=32, description="Number of targets (set from the targets when training)."
    )


class ALIGNNConfig(StrictModel):
    """ALIGNN-style line-graph network (Choudhary & DeCost, npj Comput. Mater. 7, 185 (2021)).

    A second graph has the bonds as nodes and the bond angles as edges (two bonds sharing their
    centre atom; cos θ expanded in ``n_angle_basis`` Gaussians on [−1, 1]; see
    :mod:`engine.graphs.linegraph`). Each of the ``n_alignn`` layers updates the bond graph (bond
    vectors as nodes, angle vectors as edges), then the atom graph (the updated bond vectors as
    edges), both with edge-gated graph convolutions; ``n_gcn`` atom-graph-only layers follow,
    then the mean of the atom vectors goes to a dense head.

    Attributes:
        atom_fea_len: hidden width of the atom, bond and angle vectors.
        n_alignn: ALIGNN layers (bond graph, then atom graph); 0 leaves a plain edge-gated GCN.
        n_gcn: atom-graph-only edge-gated layers after them.
        n_angle_basis: Gaussians expanding cos θ on [−1, 1].
        angle_cutoff: only bonds up to this length (Å) form angles; 0: every bond (ALIGNN).
            With every bond a training epoch costs about 4× CGCNN's; 3 Å about 2×
            (docs/results/alignn_cost.json).
        h_fea_len: width of the dense layer of the head.
        atom_features: ``cgcnn92`` (fixed 92-dim table) or ``embedding``, as in CGCNN.
        dropout: dropout before the output layer.
    """

    name: Literal["alignn"] = "alignn"
    atom_fea_len: int = Field(64, ge=1, description="Width of the atom, bond and angle vectors.")
    n_alignn: int = Field(
        2, ge=0, le=8, description="ALIGNN layers: bond graph (angles as edges), then atom graph."
    )
    n_gcn: int = Field(2, ge=0, le=8, description="Atom-graph-only layers after the ALIGNN ones.")
    n_angle_basis: int = Field(
        16, ge=2, le=128, description="Gaussians expanding cos θ on [−1, 1]."
    )
    angle_cutoff: float = Field(
        0.0,
        ge=0,
        description="Only bonds up to this length (Å) form "
        "angles; 0: every bond of the graph (cheaper when smaller).",
    )
    h_fea_len: int = Field(128, ge=1, description="Width of the dense layer of the head.")
    atom_features: Literal["cgcnn92", "embedding"] = "cgcnn92"
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout before the output layer.")


class CGCNNPhysicsConfig(StrictModel):
    """CGCNN with per-crystal physics inputs next to the pooled graph vector (issue 10 (a)).

    The head sees v_c ‖ z ‖ u: the pooled CGCNN vector v_c, the five physics quantities
    (α_V(300 K), θ_D, B0, B′, γ of the quasi-harmonic Debye route, :mod:`engine.physics`)
    standardised with training statistics and clipped to ±5, and the flag u = 1 when they are
    present (``physics_used``); a crystal without them (the route failed or was not run) gets
    z = 0 and u = 0, so it is predicted from its graph alone. Trained end to end.

    Attributes:
        atom_fea_len, n_conv, h_fea_len, n_h, gate, atom_features, dropout: as in
            :class:`CGCNNConfig`.
    """

    name: Literal["cgcnn-physics"] = "cgcnn-physics"
    atom_fea_len: int = Field(64, ge=1, description="Width of the graph vector.")
    n_conv: int = Field(3, ge=1, le=12, description="Gated graph convolutions.")
    h_fea_len: int = Field(128, ge=1, description="Width of the dense layers of the head.")
    n_h: int = Field(1, ge=1, le=6, description="Dense layers of the head.")
    gate: bool = True
    atom_features: Literal["cgcnn92", "embedding"] = "cgcnn92"
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout before the output layer.")


class CGCNNDebyeConfig(StrictModel):
    """CGCNN with a Debye-shaped head for thermal expansion (issue 16, lever 2b).

    The head predicts per crystal ln B (isothermal bulk modulus, GPa), γ > 0 (Grüneisen
    parameter) and ln θ_D (Debye temperature, K); the heat capacity C_V per atom follows from
    θ_D by the Debye function at ``temperature``, the volume per atom V from the structure, and
    α = γ·C_V/(B·V), AGL's quasi-harmonic relation (:mod:`engine.models.debye`). Targets: α
    first, then optionally θ_D (K = ``n_tasks`` ≤ 2; both are trained on their logarithm, so the
    run's ``target_transform`` is always ``log``). The task losses (``TrainConfig.loss`` on each
    standardised ln target, missing labels masked) are weighted as in :class:`MultitaskConfig`.

    Attributes:
        atom_fea_len, n_conv, gate, atom_features: the CGCNN trunk, as in :class:`CGCNNConfig`.
        h_fea_len, n_h, dropout: each of the three dense heads (ln B, γ, ln θ_D), as CGCNN's.
        temperature: T of the α label and of C_V(θ_D, T), in K.
        weighting: ``inverse-scale`` (mean of the task losses) or ``learned`` log-variances.
        n_tasks: 1 (α) or 2 (α, θ_D); set by ``train()`` from its list of targets.
    """

    name: Literal["cgcnn-debye"] = "cgcnn-debye"
    atom_fea_len: int = Field(64, ge=1, description="Width of the trunk's atom vectors.")
    n_conv: int = Field(3, ge=1, le=12, description="Gated graph convolutions.")
    h_fea_len: int = Field(128, ge=1, description="Width of each head's dense layers.")
    n_h: int = Field(1, ge=1, le=6, description="Dense layers per head.")
    gate: bool = True
    atom_features: Literal["cgcnn92", "embedding"] = "cgcnn92"
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout before each head's output.")
    temperature: float = Field(300.0, gt=0, description="Temperature of α and C_V (K).")
    weighting: Literal["learned", "inverse-scale"] = Field(
        "inverse-scale",
        description="Task-loss weighting: the mean of the task losses, or learned log-variances.",
    )
    n_tasks: int = Field(
        1, ge=1, le=2, description="Targets: α, or α and θ_D (set from the targets)."
    )


_MODEL_CONFIGS = (
    CGCNNConfig,
    EarlyFusionConfig,
    AttentionFusionConfig,
    LateFusionConfig,
    RFMagpieConfig,
    MultitaskConfig,
    ALIGNNConfig,
    CGCNNPhysicsConfig,
    CGCNNDebyeConfig,
)

#: Any model family's config, told apart by its ``name`` (a pydantic discriminated union).
#: Parse a saved dict with :func:`engine.models.model_config_from_dict`.
ModelConfig = Annotated[Union[_MODEL_CONFIGS], Field(discriminator="name")]  # noqa: UP007

#: Family names of :data:`ModelConfig`, without importing torch (``engine.models`` checks at
#: import that its ``MODEL_REGISTRY`` has exactly these keys).
MODEL_FAMILIES: tuple[str, ...] = tuple(c.model_fields["name"].default for c in _MODEL_CONFIGS)

#: Families whose inputs need more than the structure: ``cgcnn-physics`` takes the physics
#: route's θ_D, B0, B′, γ and α_V (CHGNet, ~0.5 s per structure). They are never picked as an
#: automatic default (a page must answer in about a second); chosen by name they still work.
PHYSICS_INPUT_FAMILIES = frozenset({"cgcnn-physics"})


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
