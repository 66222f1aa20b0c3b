"""Choosing the torch device: cuda, then mps, then cpu."""

from __future__ import annotations

import torch


def resolve_device(name: str = "auto") -> torch.device:
    """Return the device for ``name`` (``auto`` picks cuda → mps → cpu).

    Raises:
        ValueError: a named device is not available here.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use --device auto")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r} requested but MPS is not available; use --device auto")
    return device
