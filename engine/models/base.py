"""What every model family provides, and the composition inputs that several families share.

A family is an ``nn.Module`` subclass of :class:`FamilyModule` registered in
:data:`engine.models.MODEL_REGISTRY`. Everything that differs between families is declared on
the class, so the training run, the model store and prediction treat all families alike:

=======================  =========================================================================
``config_class``         the pydantic config (``name`` literal = the registry key)
``needs_graph``          whether the inputs include the neighbour graph (``False``: composition
                         only, no graph is built)
``training_kind``        ``gradient`` (the :class:`~engine.training.loop.Trainer`), ``forest``
                         (scikit-learn fit), ``late-fusion`` (CGCNN, then forest, then α) or
                         ``multitask`` (the Trainer on K masked, weighted task losses)
``multi_target``         whether the family predicts several targets at once (``forward`` gives
                         (B, K)); single-target families refuse a list of several targets
``prepare(data, s)``     attaches extra per-structure inputs to the ``Data`` (e.g. ``data.comp``)
``fit_statistics(xs)``   input standardisation from the training inputs, kept as buffers
``target_transform``     ``None``, or the transform a family's outputs need (``log``: the Debye
                         head computes logarithms), which training then always uses
``target_units``         ``None``, or the units the outputs must have (the Debye head: 1/K, K)
``fit_target_scale(ns)`` the training normalisers of the targets (K), for a family that builds
                         its standardised outputs from physical quantities; default: nothing
``forward(batch)``       standardised predictions (B,)
``pooled(batch)``        the vector used for embeddings (B, D); ``pooled_description`` says which
``save_extras(dir)``     non-torch parts (a forest) next to ``weights.pt``; ``load_extras(dir)``
=======================  =========================================================================

Inputs are built in exactly one place, :func:`engine.models.build_inputs` (used by training,
:class:`~engine.store.directory.LoadedModel` and therefore prediction, evaluation and embedding). A
family that needs ``data.comp`` raises :class:`MissingInputError` on a batch without it, so a code
path that bypasses ``build_inputs`` fails loudly instead of predicting from the wrong inputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

import torch
from torch import nn
from torch_geometric.data import Batch, Data

from engine.features.composition import N_MAGPIE, magpie


class MissingInputError(ValueError):
    """A batch lacks an input its model needs (it was not built by ``build_inputs``)."""


class FamilyModule(nn.Module):
    """Base class of every model family; the defaults suit a plain graph network."""

    config_class: ClassVar[type]
    needs_graph: ClassVar[bool] = True
    training_kind: ClassVar[Literal["gradient", "forest", "late-fusion", "multitask"]] = "gradient"
    multi_target: ClassVar[bool] = False
    target_transform: ClassVar[Literal["log"] | None] = None
    #: The units its outputs must be in, in order (the first given targets' units), or None for
    #: any target (the Debye head computes α in 1/K and θ_D in K).
    target_units: ClassVar[tuple[str, ...] | None] = None
    pooled_description: ClassVar[str] = ""
    #: ``forward(batch)`` is ``head(pooled(batch))``, so :meth:`forward_and_pooled` needs one
    #: pass through the trunk.
    predicts_from_pooled: ClassVar[bool] = False
    #: Files besides weights.pt that ``save_extras`` writes.
    extra_files: ClassVar[tuple[str, ...]] = ()

    def prepare(self, data: Data, structure) -> None:
        """Attach extra per-structure inputs to ``data`` (in place). Default: none."""

    def fit_statistics(self, inputs: list[Data]) -> None:
        """Fit input standardisation on the training inputs. Default: nothing to fit."""

    def fit_target_scale(self, normalizers: list) -> None:
        """Take the training normalisers (one :class:`~engine.store.card.Normalizer` per
        target). Default: nothing to take (the outputs are learned on the standardised scale)."""

    def pooled(self, batch: Batch) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_and_pooled(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """``forward(batch)`` and ``pooled(batch)`` together, (B,) or (B, K) and (B, D): one
        pass through the trunk where :attr:`predicts_from_pooled`, else two."""
        if self.predicts_from_pooled:
            crystal = self.pooled(batch)
            return self.head(crystal), crystal
        return self(batch), self.pooled(batch)

    def save_extras(self, directory: Path) -> None:
        """Write non-torch parts into a model directory. Default: none."""

    def load_extras(self, directory: Path) -> None:
        """Read what :meth:`save_extras` wrote. Default: none."""


# ----------------------------------------------------------------------------------------------
# Atom inputs, ordered or disordered (virtual crystal)


def embed_atoms(
    batch: Batch, embedding: nn.Module, atom_table: torch.Tensor | None = None, max_z: int = 100
) -> torch.Tensor:
    """Initial atom vectors of a batch, (N, width): the *virtual crystal* of every site.

    A site's vector is Σ_k w_k f(Z_k) over its species k with occupancies w_k
    (``batch.species_z``/``species_w``, :func:`engine.graphs.builder.site_species`):

    * with ``atom_table`` (the 92-wide CGCNN element table), f(Z) is the table row and the
      mixed row goes through ``embedding`` (a linear layer or MLP): the occupancy-weighted mean of
      the element features is embedded;
    * without it (``embedding`` an ``nn.Embedding`` of Z), f(Z) is the learned embedding.

    A vacancy (occupancies summing to s < 1) contributes a zero element vector: the site's
    element part is scaled by s rather than renormalised, so an oxygen site at 0.95 occupancy
    differs from a full one. An ordered site (weight 1 on one species) gives exactly the
    vector of that element. Batches without ``species_z`` (graphs built before it existed) use
    ``batch.z``.

    Raises:
        ValueError: an atomic number outside 1..``max_z``.
    """
    species_z = getattr(batch, "species_z", None)
    if species_z is None:
        species_z, species_w = batch.z.unsqueeze(1), None
    else:
        species_w = batch.species_w
    present = species_z[species_w > 0] if species_w is not None else species_z
    if bool((present > max_z).any()) or bool((present < 1).any()):
        bad = sorted(set(present[(present > max_z) | (present < 1)].tolist()))
        raise ValueError(f"atomic numbers {bad} have no CGCNN element features (Z = 1..{max_z})")
    if species_w is None:
        return embedding(atom_table[species_z[:, 0]] if atom_table is not None else species_z[:, 0])
    weights = species_w.unsqueeze(-1)
    if atom_table is not None:
        return embedding((weights * atom_table[species_z]).sum(1))
    return (weights * embedding(species_z)).sum(1)


# ----------------------------------------------------------------------------------------------
# Composition inputs (Magpie), shared by the fusion families and the forests


def attach_composition(data: Data, structure) -> None:
    """Set ``data.comp``: the raw Magpie vector of the structure's composition, float32 (1, 132).

    Batching concatenates it to (B, 132). Standardisation happens inside the model
    (:class:`CompositionScaler`), with the training statistics saved in its weights.
    """
    data.comp = torch.tensor(magpie(structure.composition), dtype=torch.float32).unsqueeze(0)


def batch_composition(batch: Batch) -> torch.Tensor:
    """The raw Magpie rows of a batch, (B, 132); a clear error when they were never attached."""
    comp = getattr(batch, "comp", None)
    if comp is None:
        raise MissingInputError(
            "this model needs composition inputs (data.comp) that the batch does not carry; "
            "build inputs with LoadedModel.prepare(...) / engine.models.build_inputs(...), "
            "not with a bare GraphBuilder"
        )
    return comp


def stack_composition(inputs: list[Data]) -> torch.Tensor:
    """Raw Magpie rows of many inputs, (N, 132)."""
    return (
        torch.cat([batch_composition(d) for d in inputs]) if inputs else torch.zeros((0, N_MAGPIE))
    )


class CompositionScaler(nn.Module):
    """Standardises Magpie vectors with training statistics; unknown entries become the mean.

    The mean and std are buffers, so they are saved in ``weights.pt`` with the rest of the
    model. A non-finite input entry (a missing element property) is replaced by the training
    mean of its feature, i.e. 0 after standardisation. Features constant over the training set
    get std 1.

    Shapes:
        - input: raw Magpie rows (B, 132)
        - output: standardised rows (B, 132)
    """

    def __init__(self, n_features: int = N_MAGPIE):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))

    def fit(self, x: torch.Tensor) -> None:
        """Set mean and std from training rows (N, n_features), ignoring non-finite entries."""
        x = x.detach().to(torch.float64)
        finite = torch.isfinite(x)
        count = finite.sum(0).clamp(min=1)
        filled = torch.where(finite, x, torch.zeros_like(x))
        mean = filled.sum(0) / count
        var = (torch.where(finite, x - mean, torch.zeros_like(x)) ** 2).sum(0) / count
        std = var.sqrt()
        std = torch.where(std > 1e-8 * mean.abs().clamp(min=1.0), std, torch.ones_like(std))
        self.mean.copy_(mean.to(self.mean.dtype))
        self.std.copy_(std.to(self.std.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.mean) / self.std
        return torch.where(torch.isfinite(z), z, torch.zeros_like(z))
