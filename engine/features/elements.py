"""The 92-dimensional CGCNN element table, read at run time from matminer's data files."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib.resources import files

import numpy as np

#: Largest atomic number the CGCNN table covers (H..Fm).
MAX_Z = 100


@lru_cache(maxsize=1)
def cgcnn_element_table() -> np.ndarray:
    """Return the CGCNN element features as a float32 array of shape (MAX_Z + 1, 92).

    Row Z holds the one-hot encodings (group, period, electronegativity, covalent radius, valence
    electrons, first ionisation energy, electron affinity, block, atomic volume) of element Z.
    Row 0 is all zeros. Identical to ``atom_init.json`` of the original CGCNN code.
    """
    path = files("matminer.utils.data_files").joinpath("cgcnn_atom_feature.json")
    raw = json.loads(path.read_text())
    width = len(next(iter(raw.values())))
    table = np.zeros((MAX_Z + 1, width), dtype=np.float32)
    for z, vec in raw.items():
        table[int(z)] = vec
    return table
