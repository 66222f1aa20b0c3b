"""CGCNN with a Debye-shaped head for thermal expansion (``cgcnn-debye``, issue 16 lever 2b).

AFLOW's AGL labels come from a quasi-harmonic Debye model, in which the volumetric thermal
expansion is α = γ·C_V/(B_T·V) (per atom: γ the Grüneisen parameter, C_V the heat capacity,
B_T the isothermal bulk modulus, V the volume). This family keeps that shape: a CGCNN trunk
(:class:`~engine.models.cgcnn.GraphEncoder`) and three CGCNN dense heads
(:class:`~engine.models.cgcnn.DenseHead`) give per crystal ln B (GPa), γ = softplus(·) > 0 and
ln θ_D (K); C_V per atom is the Debye function of θ_D at ``config.temperature``
(:func:`debye_heat_capacity`), V per atom comes from the structure (attached by ``prepare``),
and ln α follows in closed form (:func:`log_thermal_expansion`).

Outputs and targets: ``forward`` gives (B, K), K = ``config.n_tasks``: the standardised ln α and
(K = 2) the standardised ln θ_D, with the training normalisers of the two targets (log
transform; taken by :meth:`CGCNNDebye.fit_target_scale` and kept as buffers, so a saved model
predicts α and θ_D through the usual normalisers of its card). Losses are those of the
multi-task family (:class:`~engine.models.multitask.MaskedTaskLosses`: masked, weighted).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.data import Batch, Data

from engine.core.config import CGCNNDebyeConfig, GraphConfig
from engine.models.base import MissingInputError
from engine.models.cgcnn import DenseHead, GraphEncoder, trunk_options
from engine.models.multitask import MaskedTaskLosses

#: Boltzmann constant, J/K.
K_B = 1.380649e-23
#: ln of k_B·10²¹: α (1/K) = γ·c·k_B/(B·V) with c in k_B, B in GPa (10⁹ Pa), V in Å³ (10⁻³⁰ m³).
LN_KB_UNITS = math.log(K_B * 1e21)
#: Upper limit of the Debye integral in x = ħω/k_BT: the integrand is below 10⁻²⁰ beyond it.
X_MAX = 60.0
#: Gauss–Legendre points of the Debye integral (error < 10⁻⁹ relative for x_D in (0, ∞)).
N_POINTS = 64
#: Starting values of the heads (before training moves them): γ, θ_D (K), B (GPa).
GAMMA0, THETA0, BULK0 = 2.0, 300.0, 100.0


@lru_cache(maxsize=4)
def _gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(n)


def debye_heat_capacity(
    theta: torch.Tensor, temperature: float, n_points: int = N_POINTS
) -> torch.Tensor:
    """Debye heat capacity per atom, in k_B: C_V = 9 (T/θ_D)³ ∫₀^{θ_D/T} x⁴eˣ/(eˣ−1)² dx.

    Differentiable in θ_D: fixed Gauss–Legendre quadrature on [0, min(θ_D/T, X_MAX)], with the
    integrand written as x⁴e⁻ˣ/(1−e⁻ˣ)² (no overflow). Limits: 3 when θ_D ≪ T (Dulong–Petit),
    (12π⁴/5)(T/θ_D)³ when θ_D ≫ T.

    Args:
        theta: Debye temperatures θ_D in K, any shape (> 0).
        temperature: T in K.

    Returns:
        C_V/k_B per atom, the shape of ``theta``.
    """
    t, w = _gauss_legendre(n_points)
    t = torch.as_tensor(t, dtype=theta.dtype, device=theta.device)
    w = torch.as_tensor(w, dtype=theta.dtype, device=theta.device)
    x_d = theta / temperature
    upper = x_d.clamp(max=X_MAX).unsqueeze(-1)
    x = upper * (t + 1) / 2  # (..., n) nodes on [0, upper]
    integrand = x**4 * torch.exp(-x) / torch.expm1(-x) ** 2
    integral = (integrand * w).sum(-1) * upper.squeeze(-1) / 2
    return 9.0 * integral / x_d**3


def log_thermal_expansion(
    log_bulk_gpa: torch.Tensor,
    gamma: torch.Tensor,
    heat_capacity: torch.Tensor,
    volume_atom: torch.Tensor,
) -> torch.Tensor:
    """ln α, α = γ·C_V/(B·V) in 1/K, from per-atom quantities (all of one shape).

    Args:
        log_bulk_gpa: ln B, B in GPa.
        gamma: Grüneisen parameter γ (> 0).
        heat_capacity: C_V per atom in k_B (> 0).
        volume_atom: V per atom in Å³.
    """
    return (
        torch.log(gamma)
        + torch.log(heat_capacity)
        + LN_KB_UNITS
        - log_bulk_gpa
        - torch.log(volume_atom)
    )


class CGCNNDebye(MaskedTaskLosses, GraphEncoder):
    """CGCNN trunk → pooled vector → heads for ln B, γ, ln θ_D → α = γ·C_V(θ_D, T)/(B·V).

    Parameters: the trunk (``embedding``, ``convs``, as :class:`GraphEncoder`), ``head_bulk``,
    ``head_gamma``, ``head_debye`` (CGCNN dense heads, one output each) and ``log_vars`` (K,)
    (the ``learned`` weighting's log-variances). Buffers: ``target_mean``/``target_std`` (K,)
    (the ln-target normalisers), ``ln_volume_mean``, ``ln_bulk_offset``, ``ln_debye_offset``,
    ``ln_debye_scale`` (where the heads start; set by :meth:`fit_statistics` and
    :meth:`fit_target_scale`). The heads' output layers start at zero, so before training
    γ = 2, θ_D = its training mean and ln α = its training mean + (mean ln V − ln V).

    Shapes:
        - input: a ``Batch`` of B graphs carrying ``volume_atom`` (B,) in Å³/atom (attached by
          :meth:`prepare`)
        - output: standardised (B, K): ln α, then (K = 2) ln θ_D; :meth:`pooled` gives
          (B, atom_fea_len); :meth:`physics` the per-crystal quantities, each (B,)
    """

    config_class = CGCNNDebyeConfig
    training_kind = "multitask"
    multi_target = True
    target_transform = "log"
    target_units = ("1/K", "K")
    pooled_description = (
        "pooled crystal vector v_c of the CGCNN trunk: the mean of the atom vectors after the "
        "last convolution (atom_fea_len); the ln B, γ and ln θ_D heads read it"
    )

    def __init__(self, config: CGCNNDebyeConfig, graph: GraphConfig):
        super().__init__(graph, **trunk_options(config))
        self.config = config
        width = (config.atom_fea_len, config.h_fea_len, config.n_h, config.dropout)
        self.head_bulk = DenseHead(*width)
        self.head_gamma = DenseHead(*width)
        self.head_debye = DenseHead(*width)
        for head in (self.head_bulk, self.head_gamma, self.head_debye):
            # every head starts at 0: ln α starts at its training mean (up to ln V_mean − ln V)
            nn.init.zeros_(head.fc_out.weight)
            nn.init.zeros_(head.fc_out.bias)
        k = config.n_tasks
        self.log_vars = nn.Parameter(torch.zeros(k), requires_grad=config.weighting == "learned")
        self.register_buffer("target_mean", torch.zeros(k))
        self.register_buffer("target_std", torch.ones(k))
        self.register_buffer("ln_volume_mean", torch.tensor(math.log(18.0)))
        self.register_buffer("ln_bulk_offset", torch.tensor(math.log(BULK0)))
        self.register_buffer("ln_debye_offset", torch.tensor(math.log(THETA0)))
        self.register_buffer("ln_debye_scale", torch.tensor(0.5))

    @property
    def n_tasks(self) -> int:
        return self.config.n_tasks

    def prepare(self, data: Data, structure) -> None:
        """Attach ``data.volume_atom`` (1,): the structure's volume per site, Å³."""
        data.volume_atom = torch.tensor([structure.volume / len(structure)], dtype=torch.float32)

    def fit_statistics(self, inputs: list[Data]) -> None:
        """Mean ln V over the training crystals (where the α head starts)."""
        if inputs:
            volumes = torch.cat([self._volume(d) for d in inputs]).double()
            self.ln_volume_mean.fill_(float(torch.log(volumes).mean()))

    def fit_target_scale(self, normalizers: list) -> None:
        """Take the ln α (and ln θ_D) normalisers, and start the heads where ln α is its
        training mean: ln θ_D at its mean (or ln 300 K), γ = 2, ln B to match.

        Raises:
            ValueError: a normaliser without the log transform, or not K of them.
        """
        if len(normalizers) != self.n_tasks or any(n.transform != "log" for n in normalizers):
            raise ValueError(f"cgcnn-debye needs {self.n_tasks} log-transform normalisers")
        self.target_mean.copy_(torch.tensor([n.mean for n in normalizers]))
        self.target_std.copy_(torch.tensor([n.std for n in normalizers]))
        if self.n_tasks > 1:
            self.ln_debye_offset.fill_(normalizers[1].mean)
            self.ln_debye_scale.fill_(normalizers[1].std)
        theta = torch.exp(self.ln_debye_offset.double())
        ln_cv = float(torch.log(debye_heat_capacity(theta, self.config.temperature)))
        self.ln_bulk_offset.fill_(
            math.log(GAMMA0)
            + ln_cv
            + LN_KB_UNITS
            - float(self.ln_volume_mean)
            - normalizers[0].mean
        )

    @staticmethod
    def _volume(batch) -> torch.Tensor:
        volume = getattr(batch, "volume_atom", None)
        if volume is None:
            raise MissingInputError(
                "this model needs the volume per atom (data.volume_atom) that the batch does "
                "not carry; build inputs with LoadedModel.prepare(...) / "
                "engine.models.build_inputs(...)"
            )
        return volume

    def physics(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The head's quantities per crystal, each (B,): ``bulk_modulus_GPa``, ``gruneisen``,
        ``debye_temperature_K``, ``heat_capacity_kB`` (C_V per atom, k_B),
        ``volume_atom_A3`` and ``log_thermal_expansion`` (ln α, α in 1/K)."""
        crystal = self.pooled(batch)
        ln_bulk = self.ln_bulk_offset + self.head_bulk(crystal)
        gamma = F.softplus(self.head_gamma(crystal) + math.log(math.expm1(GAMMA0)))
        ln_theta = self.ln_debye_offset + self.ln_debye_scale * self.head_debye(crystal)
        theta = torch.exp(ln_theta)
        cv = debye_heat_capacity(theta, self.config.temperature)
        volume = self._volume(batch).to(crystal.dtype)
        return {
            "bulk_modulus_GPa": torch.exp(ln_bulk),
            "gruneisen": gamma,
            "debye_temperature_K": theta,
            "heat_capacity_kB": cv,
            "volume_atom_A3": volume,
            "log_thermal_expansion": log_thermal_expansion(ln_bulk, gamma, cv, volume),
            "log_debye_temperature": ln_theta,
        }

    def forward(self, batch: Batch) -> torch.Tensor:
        p = self.physics(batch)
        logs = torch.stack([p["log_thermal_expansion"], p["log_debye_temperature"]], dim=-1)
        return (logs[:, : self.n_tasks] - self.target_mean) / self.target_std
