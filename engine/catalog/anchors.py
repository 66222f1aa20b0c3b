"""Published accuracy anchors and the project's goals, per target (``SCIENCE.md`` and the
README of each dataset). No anchor was measured on our split: they are context, not a race.
``benchmarks/accuracy.py`` writes them next to the shipped models' test metrics in
``docs/accuracy.md``; the dashboard's Home page plots them.
"""

from __future__ import annotations

#: target → goal and published anchors: (label, metrics, what data the anchor was measured on).
ANCHORS: dict[str, dict] = {
    "agl_thermal_expansion_300K": {
        "goal": {"mae": 3.0e-6, "r": 0.98},  # issue 16
        "anchors": [
            ("Roost (composition only)", {"mae": 3.69e-6}, "CrabNet's 724 test formulas"),
            ("CrabNet (composition only)", {"mae": 3.85e-6}, "CrabNet's 724 test formulas"),
            ("RF (composition only)", {"mae": 5.44e-6}, "CrabNet's 724 test formulas"),
            ("CGCNN study", {"r": 0.957}, "5,409 AFLOW compounds, 6:2:2 split"),
        ],
        "scale": 1e-6,
        "scale_label": "10⁻⁶ 1/K",
    },
    "e_form": {
        "goal": {"mae": 0.030},  # issue 16 (issue 12 asked 0.035)
        "anchors": [
            ("CGCNN paper", {"mae": 0.039}, "46,744 Materials Project compounds"),
            ("CGCNN on Matbench mp_e_form", {"mae": 0.0337}, "Matbench folds, 132k compounds"),
        ],
        "scale": 1.0,
        "scale_label": "eV/atom",
    },
    "band_gap": {
        "anchors": [("CGCNN paper", {"mae": 0.388}, "Materials Project band gaps")],
        "scale": 1.0,
        "scale_label": "eV",
    },
}
