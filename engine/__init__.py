"""Crystal-graph engine: structures → periodic neighbour graphs → CGCNN and hybrid
(composition and structure) models → predictions.

The public API is imported lazily so that ``import engine`` stays fast (torch and pymatgen load
on first use)::

    from engine import read_structures, load_dataset, GraphBuilder, train, load_model, predict
"""

from __future__ import annotations

from importlib import import_module

from engine.config import ENGINE_VERSION as __version__

_API = {
    "read_structures": "engine.structures",
    "read_structure": "engine.structures",
    "NamedStructure": "engine.structures",
    "ReadError": "engine.structures",
    "StructureReadError": "engine.structures",
    "StructureBatch": "engine.io",
    "ReadLimits": "engine.io",
    "iter_entries": "engine.io",
    "load_dataset": "engine.datasets",
    "split_dataset": "engine.datasets",
    "find_datasets": "engine.datasets",
    "LabelledDataset": "engine.datasets",
    "GraphBuilder": "engine.graphs",
    "gaussian_expand": "engine.graphs",
    "GraphConfig": "engine.config",
    "CGCNNConfig": "engine.config",
    "EarlyFusionConfig": "engine.config",
    "AttentionFusionConfig": "engine.config",
    "LateFusionConfig": "engine.config",
    "RFMagpieConfig": "engine.config",
    "MultitaskConfig": "engine.config",
    "ALIGNNConfig": "engine.config",
    "ModelConfig": "engine.config",
    "MODEL_FAMILIES": "engine.config",
    "TrainConfig": "engine.config",
    "SplitConfig": "engine.config",
    "MODEL_REGISTRY": "engine.models",
    "build_model": "engine.models",
    "model_config_from_dict": "engine.models",
    "magpie": "engine.features.composition",
    "magpie_many": "engine.features.composition",
    "train": "engine.training",
    "TrainResult": "engine.training",
    "regression_metrics": "engine.training",
    "load_model": "engine.store",
    "save_model": "engine.store",
    "list_models": "engine.store",
    "LoadedModel": "engine.store",
    "ModelCard": "engine.store",
    "ModelLoadError": "engine.store",
    "EnsembleModel": "engine.store",
    "calibrate_model": "engine.uncertainty",
    "train_ensemble": "engine.uncertainty",
    "calibration_curve": "engine.uncertainty",
    "nearest_training": "engine.prediction",
    "predict": "engine.prediction",
    "embed": "engine.prediction",
    "evaluate": "engine.prediction",
    "Predictions": "engine.prediction",
    "fusion_weights": "engine.prediction",
    "contribution_analysis": "engine.prediction",
    "Contributions": "engine.prediction",
    "WEIGHT_COLUMNS": "engine.prediction",
    "reduce": "engine.embeddings",
    "start_training_job": "engine.jobs",
    "list_jobs": "engine.jobs",
    "job_status": "engine.jobs",
    "job_progress": "engine.jobs",
    "cancel_job": "engine.jobs",
    "write_examples": "engine.examples",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
