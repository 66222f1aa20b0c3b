"""Start-up time: torch_geometric without ``torch._dynamo``.

torch_geometric's ``torch_geometric/isinstance.py`` (PyG 2.8) imports ``torch._dynamo`` when
the package is imported, only to unwrap ``torch.compile``'d modules in ``is_torch_instance``;
that import took 1.05 s of the 4.5 s a one-structure ``python -m engine predict`` needed on a
quiet 2-core machine (torch itself imports ``_dynamo`` lazily). :func:`install`, run by
``import engine``, puts an equivalent module in its place before torch_geometric is imported: a
compiled module exists only once ``torch._dynamo`` has been imported, so looking it up in
``sys.modules`` gives the same answer without importing it.
"""

from __future__ import annotations

import sys
import types

SHIMMED = "torch_geometric.isinstance"


def is_torch_instance(obj, cls) -> bool:
    """``isinstance(obj, cls)``, looking through a ``torch.compile`` wrapper (PyG's function)."""
    dynamo = sys.modules.get("torch._dynamo")
    if dynamo is not None and isinstance(obj, dynamo.OptimizedModule):
        return isinstance(obj._orig_mod, cls)
    return isinstance(obj, cls)


def install() -> None:
    """Register the module for torch_geometric to import, unless it is already imported."""
    if "torch_geometric" in sys.modules or SHIMMED in sys.modules:
        return
    module = types.ModuleType(SHIMMED, __doc__)
    module.is_torch_instance = is_torch_instance
    sys.modules[SHIMMED] = module
