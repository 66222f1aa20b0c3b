"""Structures from the Materials Project through its own client, ``mp-api``, with an API key.

Optional (``pip install 'crystal-screen[mp]'``): the ``mp`` OPTIMADE provider of
:mod:`engine.io.optimade` reaches the same structures without a key. The key comes from the
caller (the dashboard's password field) or ``$MP_API_KEY``; it is passed to the client only,
never written anywhere by this module, and masked in every message.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import re
import warnings

from engine.io import NamedStructure, ReadError
from engine.io.optimade import FetchResult, Progress

__all__ = ["MaterialsProjectError", "api_key", "fetch_materials_project", "parse_query"]

KEY_ENV = "MP_API_KEY"
#: Where the client connects (``$MP_API_ENDPOINT`` overrides it, as in mp-api itself).
DEFAULT_ENDPOINT = "https://api.materialsproject.org/"
#: Largest page the Materials Project API serves.
MAX_PAGE = 1000
#: Terminal colour codes the client puts into its messages.
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class MaterialsProjectError(RuntimeError):
    """No key, no client, or a query the client cannot run (the message says which)."""


def api_key(given: str | None = None) -> str:
    """``given``, else ``$MP_API_KEY``.

    Raises:
        MaterialsProjectError: neither is set.
    """
    key = (given or os.environ.get(KEY_ENV) or "").strip()
    if not key:
        raise MaterialsProjectError(
            f"no Materials Project API key: set {KEY_ENV} or enter it in the search settings "
            "(get one at https://next-gen.materialsproject.org/api)"
        )
    return key


def parse_query(text: str) -> dict:
    """A JSON object of keyword arguments for mp-api's ``materials.summary.search``, e.g.
    ``{"chemsys": "La-Co-O", "num_sites": [1, 20]}``."""
    try:
        query = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise MaterialsProjectError(
            f"the Materials Project query must be a JSON object of summary-search arguments, "
            f'e.g. {{"chemsys": "La-Co-O"}}: {exc.msg}'
        ) from None
    if not isinstance(query, dict):
        raise MaterialsProjectError("the Materials Project query must be a JSON object")
    return query


def _check_arguments(search, kwargs: dict) -> None:
    """Refuse arguments that ``search`` does not name (it takes and rejects any others)."""
    named = {
        name
        for name, p in inspect.signature(search).parameters.items()
        if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    }
    unknown = sorted(set(kwargs) - named)
    if unknown:
        raise MaterialsProjectError(
            f"the Materials Project client rejected the query: unknown summary-search "
            f"argument(s) {', '.join(unknown)} (e.g. chemsys, elements, formula, material_ids, "
            "num_sites, num_elements)"
        )


def _convert(doc: dict, source: str) -> NamedStructure | ReadError:
    from pymatgen.core import Structure

    ident = f"mp:{doc.get('material_id')}"
    raw = doc.get("structure")
    try:
        structure = raw if isinstance(raw, Structure) else Structure.from_dict(raw)
    except Exception as exc:  # noqa: BLE001 - one bad document never stops the search
        return ReadError(source=ident, reason=f"not a usable structure: {exc}")
    return NamedStructure(id=ident, structure=structure, source=source)


def fetch_materials_project(
    query: dict | str,
    *,
    limit: int = 100,
    key: str | None = None,
    endpoint: str | None = None,
    progress: Progress | None = None,
) -> FetchResult:
    """Search the Materials Project summary documents and convert up to ``limit`` structures.

    Args:
        query: keyword arguments of mp-api's ``materials.summary.search`` (a dict or JSON text).
        key: the API key (default ``$MP_API_KEY``).
        endpoint: the API's base URL (default ``$MP_API_ENDPOINT`` or the public API).
        progress: called once with (structures fetched, structures fetched).

    Returns:
        A :class:`~engine.io.optimade.FetchResult` (ids ``mp:<material_id>``); a failure sets
        ``error`` with the key masked.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    endpoint = endpoint or os.environ.get("MP_API_ENDPOINT") or DEFAULT_ENDPOINT
    endpoint = endpoint if endpoint.endswith("/") else endpoint + "/"
    result = FetchResult(provider="mp", base_url=endpoint)
    try:
        from mp_api.client import MPRester
    except ImportError:
        result.error = "Materials Project access needs mp-api: pip install 'crystal-screen[mp]'"
        return result
    secret = ""
    try:
        kwargs = parse_query(query) if isinstance(query, str) else dict(query)
        secret = api_key(key)
        page = min(limit, MAX_PAGE)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with MPRester(
                secret, endpoint=endpoint, use_document_model=False, mute_progress_bars=True
            ) as rester:
                search = rester.materials.summary.search
                _check_arguments(search, kwargs)
                docs = search(
                    **kwargs,
                    fields=["material_id", "structure"],
                    chunk_size=page,
                    num_chunks=math.ceil(limit / page),
                )
    except Exception as exc:  # noqa: BLE001 - the client raises many kinds; all become one line
        message = " ".join(ANSI.sub("", str(exc)).split()) or type(exc).__name__
        if secret:
            message = message.replace(secret, "***")
        if isinstance(exc, MaterialsProjectError):
            result.error = message
        else:
            result.error = f"the Materials Project API at {endpoint} failed: {message}"
        return result
    for doc in docs[:limit]:
        got = _convert(doc, f"{endpoint} mp:{doc.get('material_id')}")
        (result.items if isinstance(got, NamedStructure) else result.errors).append(got)
    if progress is not None:
        progress(len(result.items) + len(result.errors), len(result.items) + len(result.errors))
    return result
