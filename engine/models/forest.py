"""Random forests on the Magpie descriptor, and their safe persistence with skops.

The forest is scikit-learn's ``RandomForestRegressor``. It is saved as ``forest.skops`` with
``skops.io`` (a zip of JSON and ``.npy`` arrays; loading never unpickles). Loading:

1. lists the types the file would construct (``skops.io.get_untrusted_types``) and refuses the
   file, naming them, if any is outside :data:`TRUSTED_TYPES` — the only type beyond skops'
   defaults is ``sklearn.tree._tree.Tree``, the node arrays of each tree;
2. loads with exactly those trusted types;
3. checks the result is a fitted ``RandomForestRegressor`` over the expected number of features
   and validates every tree's node arrays (child indices inside the tree, feature indices inside
   the descriptor), because scikit-learn indexes them without bounds checks at prediction time —
   the reason skops does not trust ``Tree`` by default.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Batch, Data

from engine.core.config import GraphConfig, RFMagpieConfig
from engine.features.composition import N_MAGPIE
from engine.models.base import (
    CompositionScaler,
    FamilyModule,
    attach_composition,
    batch_composition,
    stack_composition,
)

FOREST_FILE = "forest.skops"
#: Types a forest file may hold beyond skops' own defaults (numpy arrays, builtins, sklearn
#: estimators it trusts already).
TRUSTED_TYPES: tuple[str, ...] = ("sklearn.tree._tree.Tree",)


class UntrustedFileError(ValueError):
    """A skops file holds types this engine does not load, or malformed trees; says which."""


def make_forest(config: RFMagpieConfig, *, seed: int, n_jobs: int | None = None):
    """An unfitted ``RandomForestRegressor`` with the config's settings."""
    from sklearn.ensemble import RandomForestRegressor

    return RandomForestRegressor(
        n_estimators=config.n_estimators,
        max_depth=config.max_depth,
        min_samples_leaf=config.min_samples_leaf,
        max_features=config.max_features,
        random_state=seed,
        n_jobs=n_jobs,
    )


def save_forest(forest, path: str | Path) -> Path:
    """Write a fitted forest with ``skops.io.dump``."""
    import skops.io as sio

    path = Path(path)
    sio.dump(forest, path)
    return path


def _check_trees(forest, n_features: int, path: Path) -> None:
    for k, estimator in enumerate(forest.estimators_):
        tree = estimator.tree_
        n = int(tree.node_count)
        left, right = np.asarray(tree.children_left), np.asarray(tree.children_right)
        feature = np.asarray(tree.feature)
        if not (len(left) == len(right) == len(feature) == n) or n < 1:
            raise UntrustedFileError(f"{path}: tree {k} has inconsistent node arrays")
        leaf = left == -1
        if not np.array_equal(leaf, right == -1):
            raise UntrustedFileError(f"{path}: tree {k} has nodes with one child")
        inner = ~leaf
        for name, child in (("left", left), ("right", right)):
            if inner.any() and ((child[inner] <= 0) | (child[inner] >= n)).any():
                raise UntrustedFileError(
                    f"{path}: tree {k} has {name} child indices outside 0..{n - 1}"
                )
        if inner.any() and ((feature[inner] < 0) | (feature[inner] >= n_features)).any():
            raise UntrustedFileError(
                f"{path}: tree {k} splits on features outside 0..{n_features - 1}"
            )
        if np.asarray(tree.value).shape[0] != n:
            raise UntrustedFileError(
                f"{path}: tree {k} has {tree.value.shape[0]} leaf values for {n} nodes"
            )


def load_forest(path: str | Path, *, n_features: int):
    """Load a forest written by :func:`save_forest`, refusing anything else.

    Raises:
        FileNotFoundError: no such file.
        UntrustedFileError: the file would construct a type outside :data:`TRUSTED_TYPES`, is
            not a fitted regression forest over ``n_features`` features, or has malformed trees.
    """
    import skops.io as sio
    from sklearn.ensemble import RandomForestRegressor

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:  # noqa: BLE001 - a corrupt zip or schema
        raise UntrustedFileError(f"{path} is not a readable skops file: {exc}") from None
    unexpected = sorted(set(untrusted) - set(TRUSTED_TYPES))
    if unexpected:
        raise UntrustedFileError(
            f"{path} holds untrusted types {unexpected}; this engine loads only forests it "
            f"wrote (trusted beyond skops' defaults: {list(TRUSTED_TYPES)}). Refusing to load it."
        )
    try:
        forest = sio.load(path, trusted=[t for t in TRUSTED_TYPES if t in untrusted])
    except Exception as exc:  # noqa: BLE001 - skops raises many kinds on a malformed file
        raise UntrustedFileError(f"{path} could not be loaded: {exc}") from None
    if type(forest) is not RandomForestRegressor or not hasattr(forest, "estimators_"):
        raise UntrustedFileError(
            f"{path} holds a {type(forest).__name__}, not a fitted RandomForestRegressor"
        )
    if getattr(forest, "n_features_in_", None) != n_features:
        raise UntrustedFileError(
            f"{path}: the forest expects {getattr(forest, 'n_features_in_', '?')} features, "
            f"the model {n_features}"
        )
    _check_trees(forest, n_features, path)
    return forest


class RFMagpie(FamilyModule):
    """Random forest on the standardised Magpie descriptor (the composition-only baseline).

    An ``nn.Module`` only so that it travels like every other family: the standardisation
    statistics are buffers (``weights.pt``), the fitted forest is an attribute saved as
    ``forest.skops``. ``forward`` returns standardised predictions (float32) like the networks.
    No graph is built for it.

    Shapes:
        - input: a ``Batch`` from :func:`engine.models.build_inputs` carrying ``comp`` (B, 132)
        - output: standardised predictions (B,); :meth:`pooled` the standardised Magpie (B, 132)
    """

    config_class = RFMagpieConfig
    needs_graph = False
    training_kind = "forest"
    pooled_description = (
        "the standardised Magpie descriptor (132 features): a random forest learns no vector"
    )
    extra_files = (FOREST_FILE,)

    def __init__(self, config: RFMagpieConfig, graph: GraphConfig | None = None):
        super().__init__()
        self.config = config
        self.graph_config = graph
        self.composition = CompositionScaler(N_MAGPIE)
        self.forest = None

    def prepare(self, data: Data, structure) -> None:
        attach_composition(data, structure)

    def fit_statistics(self, inputs: list[Data]) -> None:
        self.composition.fit(stack_composition(inputs))

    def features(self, batch: Batch | Data) -> torch.Tensor:
        """Standardised Magpie rows (B, 132), float32."""
        return self.composition(batch_composition(batch))

    def fit_forest(
        self, inputs: list[Data], y: np.ndarray, *, seed: int, n_jobs: int | None = None
    ) -> None:
        """Fit the forest on training inputs and standardised targets (N,)."""
        with torch.no_grad():
            x = self.composition(stack_composition(inputs)).numpy()
        forest = make_forest(self.config, seed=seed, n_jobs=n_jobs)
        forest.fit(x, np.asarray(y, dtype=np.float64))
        forest.n_jobs = None  # predicting small batches is faster without a thread pool
        self.forest = forest

    def forward(self, batch: Batch) -> torch.Tensor:
        if self.forest is None:
            raise RuntimeError(
                "the random forest is not fitted (train it, or load a model "
                f"directory with its {FOREST_FILE})"
            )
        x = self.features(batch)
        out = self.forest.predict(x.detach().cpu().numpy()) if len(x) else np.zeros(0)
        # float32 like the networks (MPS holds no float64); decoding happens in float64 on the CPU
        return torch.as_tensor(out, dtype=torch.float32).to(x.device)

    def pooled(self, batch: Batch) -> torch.Tensor:
        return self.features(batch)

    def save_extras(self, directory: Path) -> None:
        if self.forest is None:
            raise RuntimeError("cannot save an unfitted random forest")
        save_forest(self.forest, Path(directory) / FOREST_FILE)

    def load_extras(self, directory: Path) -> None:
        self.forest = load_forest(Path(directory) / FOREST_FILE, n_features=N_MAGPIE)
