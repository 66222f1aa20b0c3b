"""Start-up cost: what a one-structure prediction imports (issue 12), and the import shim that
keeps ``torch._dynamo`` out of it (:mod:`engine.core.imports`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def test_predicting_one_cif_imports_neither_dynamo_nor_scipy_optimize(tmp_path):
    code = (
        "import sys\n"
        "from engine.apps.cli.main import main\n"
        "rc = main(['predict', '--model', 'cte-cgcnn-aflow', '--input', "
        f"'{ROOT / 'assets' / 'examples' / 'SrTiO3_perovskite.cif'}', '--output', "
        f"'{tmp_path / 'out.csv'}'])\n"
        "print(rc, 'torch._dynamo' in sys.modules, 'scipy.optimize' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-3:] == ["0", "False", "False"], out.stdout
    assert (tmp_path / "out.csv").read_text().count("\n") == 2  # header and the one structure


def test_torch_geometric_still_sees_through_compiled_modules():
    import torch_geometric

    from engine.core.imports import is_torch_instance

    assert torch_geometric.is_torch_instance is is_torch_instance  # the shim is in use
    model = torch.nn.Linear(2, 2)
    compiled = torch.compile(model)  # imports torch._dynamo; compiles only when called
    assert type(compiled).__name__ == "OptimizedModule"
    assert is_torch_instance(compiled, torch.nn.Linear)
    assert is_torch_instance(model, torch.nn.Linear)
    assert not is_torch_instance(compiled, torch.nn.Conv1d)
