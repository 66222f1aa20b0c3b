"""Model names: shipped models, the user's models and the original CGCNN checkpoints
(``cgcnn-original/…``), resolved to loaded models; and the list of every available model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.catalog.original import ORIGINAL_PREFIX, load_original, original_cards
from engine.core.config import shipped_model_dir, user_model_dir
from engine.store.card import MODEL_FILE, ModelLoadError, card_summary, read_card
from engine.store.directory import LoadedModel, load_directory


def load_model(path_or_name: str | Path) -> LoadedModel:
    """Load a model from a directory, or by name (shipped, user, or ``cgcnn-original/...``).

    Raises:
        ModelLoadError: unknown name, or a directory whose config, version or weights do not
            fit; the message says which.
    """
    text = str(path_or_name)
    if text.startswith(ORIGINAL_PREFIX):
        return load_original(text[len(ORIGINAL_PREFIX) :])
    directory = Path(path_or_name).expanduser()
    if not directory.is_dir():
        for root in (shipped_model_dir(), user_model_dir()):
            if (root / text / MODEL_FILE).is_file():
                directory = root / text
                break
        else:
            names = ", ".join(m["name"] for m in list_models()) or "none"
            raise ModelLoadError(f"No model directory or model named {text!r}. Available: {names}")
    return load_directory(directory)


def list_models() -> list[dict[str, Any]]:
    """Every available model: shipped, the user's, and the original CGCNN checkpoints.

    Each entry has at least ``name``, ``target``, ``unit`` and ``source``, and ``targets`` /
    ``units``: every target the model predicts (``[target]`` for a single-target model).
    """
    found = []
    for root, source in ((shipped_model_dir(), "shipped"), (user_model_dir(), "user")):
        if not root.is_dir():
            continue
        for directory in sorted(p for p in root.iterdir() if (p / MODEL_FILE).is_file()):
            try:
                card = read_card(directory)
            except ModelLoadError:
                continue  # an unreadable directory is reported when loaded by name
            found.append({**card_summary(card, directory), "source": source})
    found.extend(card_summary(card, None) for card in original_cards())
    return found
