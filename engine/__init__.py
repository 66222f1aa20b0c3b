"""Crystal-graph engine: structures → periodic neighbour graphs → CGCNN and hybrid
(composition and structure) models → predictions.

The public API is imported lazily so that ``import engine`` stays fast (torch and pymatgen load
on first use)::

    from engine import read_structures, load_dataset, GraphBuilder, train, load_model, predict
"""

from __future__ import annotations

from importlib import import_module

from engine.core.config import ENGINE_VERSION as __version__

_API = {
    "read_structures": "engine.io",
    "read_structure": "engine.io",
    "NamedStructure": "engine.io",
    "ReadError": "engine.io",
    "StructureReadError": "engine.io",
    "StructureBatch": "engine.io",
    "ReadLimits": "engine.io",
    "iter_entries": "engine.io",
    "load_dataset": "engine.io.datasets",
    "split_dataset": "engine.io.splits",
    "find_datasets": "engine.io.datasets",
    "LabelledDataset": "engine.io.datasets",
    "GraphBuilder": "engine.graphs.builder",
    "gaussian_expand": "engine.graphs.builder",
    "GraphConfig": "engine.core.config",
    "CGCNNConfig": "engine.core.config",
    "EarlyFusionConfig": "engine.core.config",
    "AttentionFusionConfig": "engine.core.config",
    "LateFusionConfig": "engine.core.config",
    "RFMagpieConfig": "engine.core.config",
    "MultitaskConfig": "engine.core.config",
    "ALIGNNConfig": "engine.core.config",
    "ModelConfig": "engine.core.config",
    "MODEL_FAMILIES": "engine.core.config",
    "TrainConfig": "engine.core.config",
    "SplitConfig": "engine.core.config",
    "MODEL_REGISTRY": "engine.models",
    "build_model": "engine.models",
    "model_config_from_dict": "engine.models",
    "magpie": "engine.features.composition",
    "magpie_many": "engine.features.composition",
    "train": "engine.training",
    "TrainResult": "engine.training",
    "regression_metrics": "engine.training",
    "load_model": "engine.catalog.names",
    "save_model": "engine.store.directory",
    "list_models": "engine.catalog.names",
    "LoadedModel": "engine.store.directory",
    "ModelCard": "engine.store.card",
    "ModelLoadError": "engine.store.card",
    "EnsembleModel": "engine.store.directory",
    "calibrate_model": "engine.training.ensembles",
    "train_ensemble": "engine.training.ensembles",
    "calibration_curve": "engine.uq.sigma",
    "nearest_training": "engine.inference.prediction",
    "predict": "engine.inference.prediction",
    "embed": "engine.inference.prediction",
    "evaluate": "engine.inference.prediction",
    "Predictions": "engine.inference.prediction",
    "fusion_weights": "engine.inference.contributions",
    "contribution_analysis": "engine.inference.contributions",
    "Contributions": "engine.inference.contributions",
    "WEIGHT_COLUMNS": "engine.inference.prediction",
    "reduce": "engine.inference.embeddings",
    "start_training_job": "engine.apps.jobs.training",
    "list_jobs": "engine.apps.jobs.training",
    "job_status": "engine.apps.jobs.training",
    "job_progress": "engine.apps.jobs.training",
    "cancel_job": "engine.apps.jobs.training",
    "delete_job": "engine.apps.jobs.training",
    "read_log": "engine.apps.jobs.training",
    "job_request": "engine.apps.jobs.training",
    "job_trials": "engine.apps.jobs.training",
    "JobState": "engine.apps.jobs.schema",
    "JobStatus": "engine.apps.jobs.schema",
    "start_thermal_job": "engine.apps.jobs.physics",
    "thermal_job": "engine.apps.jobs.physics",
    "write_examples": "engine.materials.examples",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
