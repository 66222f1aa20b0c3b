"""Structures from OPTIMADE databases (Materials Project, AFLOW, OQMD, COD, JARVIS, Alexandria…).

The provider list is the ``optimade`` package's bundled ``providers.json``; a provider's index
meta-database names its databases, and the first one (or ``database=``) is queried. A provider can
also be given as the base URL of an OPTIMADE database (``http://127.0.0.1:5000``).

Entries are converted with the ``optimade`` package's pymatgen adapter: partially occupied sites
stay disordered pymatgen sites (vacancies lower the occupancy). Each structure keeps its
provider and id as ``"<provider>:<id>"`` (e.g. ``mp:mp-1234``). A failure (no network, provider
down, bad filter) stops the search with one message in :attr:`FetchResult.error` and keeps what
was already fetched.
"""

from __future__ import annotations

import gzip
import json
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

import requests

from engine.io import NamedStructure, ReadError

__all__ = [
    "FetchResult",
    "OptimadeError",
    "Provider",
    "fetch_structures",
    "providers",
    "resolve_database",
    "structure_record",
    "write_jsonl",
]

#: Attributes requested for each structure (the adapter needs these).
RESPONSE_FIELDS = (
    "lattice_vectors",
    "cartesian_site_positions",
    "species",
    "species_at_sites",
    "nsites",
    "dimension_types",
    "nperiodic_dimensions",
    "structure_features",
    "chemical_formula_reduced",
    "last_modified",
)
#: Entries asked for per page (providers may return fewer).
DEFAULT_PAGE_SIZE = 50
DEFAULT_TIMEOUT = 30.0

Progress = Callable[[int, "int | None"], None]


class OptimadeError(RuntimeError):
    """A provider could not be found, reached or queried (the message says which and why)."""


@dataclass(frozen=True)
class Provider:
    """An OPTIMADE provider of the bundled ``providers.json``.

    Attributes:
        id: its prefix, e.g. ``mp`` (the prefix of the ids it gives).
        name, description, homepage: as listed.
        index_url: base URL of its index meta-database (None: it serves no structures).
    """

    id: str
    name: str
    description: str = ""
    homepage: str = ""
    index_url: str | None = None


@lru_cache(maxsize=1)
def providers() -> tuple[Provider, ...]:
    """Providers with an index meta-database, from the ``optimade`` package's ``providers.json``."""
    from optimade.server import data

    path = Path(data.__file__).parent / data.data_paths["providers"]
    listed = json.loads(path.read_text(encoding="utf-8"))["data"]
    out = []
    for entry in listed:
        attrs = entry.get("attributes", {})
        if attrs.get("base_url"):
            out.append(
                Provider(
                    id=entry["id"],
                    name=attrs.get("name") or entry["id"],
                    description=attrs.get("description") or "",
                    homepage=attrs.get("homepage") or "",
                    index_url=attrs["base_url"].rstrip("/"),
                )
            )
    return tuple(out)


def _is_url(text: str) -> bool:
    return urlparse(text).scheme in ("http", "https")


def _href(link) -> str | None:
    """A JSON:API link: a string or ``{"href": ...}``."""
    if isinstance(link, dict):
        return link.get("href")
    return link or None


def _get(session: requests.Session, url: str, what: str, timeout: float, params=None) -> dict:
    """GET ``url`` as JSON; every failure becomes one :class:`OptimadeError` line."""
    try:
        response = session.get(url, params=params, timeout=timeout)
    except requests.Timeout:
        raise OptimadeError(f"{what} did not answer within {timeout:g} s ({url})") from None
    except requests.RequestException as exc:
        reason = type(exc).__name__ if isinstance(exc, requests.ConnectionError) else str(exc)
        raise OptimadeError(
            f"cannot reach {what} at {url} ({reason}: no network, or the provider is down)"
        ) from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 400:
        details = [
            e.get("detail") or e.get("title")
            for e in (body or {}).get("errors", [])
            if isinstance(e, dict)
        ]
        detail = (
            (details[0] or "").split("Lark traceback")[0].strip().rstrip(".") if details else ""
        )
        kind = "rejected the query" if response.status_code < 500 else "failed"
        raise OptimadeError(
            f"{what} {kind} (HTTP {response.status_code})" + (f": {detail}" if detail else "")
        )
    if not isinstance(body, dict):
        raise OptimadeError(f"{what} answered with something that is not OPTIMADE JSON ({url})")
    return body


def resolve_database(
    provider: str,
    *,
    database: str | None = None,
    session: requests.Session | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> tuple[str, str]:
    """The ``(prefix, base URL)`` of the database to query for ``provider``.

    Args:
        provider: a provider id of :func:`providers` (``mp``, ``oqmd``, …) or the base URL of an
            OPTIMADE database (its prefix is then taken from the first answer).
        database: which of the provider's databases (its id in the index); default the first.

    Raises:
        OptimadeError: unknown provider, unreachable index, or no such database.
    """
    if _is_url(provider):
        return "", provider.rstrip("/")
    known = {p.id: p for p in providers()}
    if provider not in known:
        raise OptimadeError(
            f"unknown OPTIMADE provider {provider!r}; known: "
            f"{', '.join(sorted(known))} (or give a database base URL)"
        )
    index = known[provider].index_url
    body = _get(
        session or requests.Session(), f"{index}/v1/links", f"the {provider} index", timeout
    )
    children = [
        (d.get("id"), _href(d.get("attributes", {}).get("base_url")))
        for d in body.get("data", [])
        if d.get("attributes", {}).get("link_type") == "child"
    ]
    children = [(i, url) for i, url in children if url]
    if database is not None:
        children = [(i, url) for i, url in children if i == database]
    if not children:
        what = f"no database {database!r}" if database else "no databases"
        raise OptimadeError(f"the {provider} index at {index} lists {what}")
    return provider, children[0][1].rstrip("/")


@dataclass
class FetchResult:
    """Structures fetched from one OPTIMADE database.

    Attributes:
        items: converted structures, ids ``"<provider>:<entry id>"``, source the query URL.
        errors: entries that could not be converted (id and reason).
        provider: the prefix used in the ids.
        base_url: the database queried.
        available: matches the provider reported (None when it did not say).
        error: why fetching stopped early (None when it finished); what came before is kept.
    """

    items: list[NamedStructure] = field(default_factory=list)
    errors: list[ReadError] = field(default_factory=list)
    provider: str = ""
    base_url: str = ""
    available: int | None = None
    error: str | None = None

    @property
    def complete(self) -> bool:
        return self.error is None


def entry_structure(entry: dict, ident: str, source: str) -> NamedStructure | ReadError:
    """One OPTIMADE structure entry as a pymatgen structure (disordered sites kept)."""
    from optimade.adapters.structures.pymatgen import get_pymatgen
    from optimade.models import StructureResource
    from pymatgen.core import Structure

    attrs = {"last_modified": None, "structure_features": [], **entry.get("attributes", {})}
    if not attrs.get("lattice_vectors") or attrs.get("nperiodic_dimensions") == 0:
        return ReadError(source=ident, reason="not periodic (no lattice vectors): a molecule")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            resource = StructureResource(
                id=str(entry.get("id")), type="structures", attributes=attrs
            )
            structure = get_pymatgen(resource)
    except Exception as exc:  # noqa: BLE001 - one bad entry never stops the search
        reason = str(exc).strip().splitlines()
        return ReadError(
            source=ident,
            reason="not a usable OPTIMADE structure: "
            + (" ".join(reason[:3]) if reason else type(exc).__name__),
        )
    if not isinstance(structure, Structure):
        return ReadError(source=ident, reason="not periodic (no lattice vectors): a molecule")
    return NamedStructure(id=ident, structure=structure, source=source)


def fetch_structures(
    provider: str,
    filter: str = "",
    *,
    limit: int = 100,
    page_size: int = DEFAULT_PAGE_SIZE,
    database: str | None = None,
    progress: Progress | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    session: requests.Session | None = None,
) -> FetchResult:
    """Search ``provider`` with an OPTIMADE ``filter`` and convert up to ``limit`` structures.

    Args:
        provider: a provider id (``mp``, ``oqmd``, ``cod``, …; :func:`providers`) or the base
            URL of an OPTIMADE database.
        filter: an OPTIMADE filter, e.g. ``elements HAS ALL "La","Co","O" AND nsites<=20``
            ("" for everything).
        limit: most structures fetched (≥ 1).
        page_size: entries asked for per request; pages are followed through ``links.next``.
        database: which of the provider's databases (default: the first its index lists).
        progress: called after each page with (entries fetched, expected total or None).
        session: a ``requests.Session`` to use (for proxies or tests).

    Returns:
        A :class:`FetchResult`; a failure sets ``error`` and keeps the entries fetched before it.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    session = session or requests.Session()
    result = FetchResult()
    try:
        result.provider, result.base_url = resolve_database(
            provider, database=database, session=session, timeout=timeout
        )
    except OptimadeError as exc:
        result.error = str(exc)
        return result
    url = f"{result.base_url}/v1/structures"
    params = {"page_limit": min(page_size, limit), "response_fields": ",".join(RESPONSE_FIELDS)}
    if filter.strip():
        params["filter"] = filter.strip()
    seen = 0
    while url and seen < limit:
        label = f"the {result.provider or result.base_url} database"
        try:
            body = _get(session, url, label, timeout, params=params)
        except OptimadeError as exc:
            result.error = str(exc)
            break
        meta = body.get("meta") or {}
        if not result.provider:
            result.provider = (meta.get("provider") or {}).get("prefix") or urlparse(url).hostname
        if result.available is None and isinstance(meta.get("data_returned"), int):
            result.available = meta["data_returned"]
        entries = body.get("data") or []
        for entry in entries[: limit - seen]:
            ident = f"{result.provider}:{entry.get('id')}"
            got = entry_structure(entry, ident, f"{result.base_url} {ident}")
            (result.items if isinstance(got, NamedStructure) else result.errors).append(got)
        seen += min(len(entries), limit - seen)
        if progress is not None:
            expected = min(limit, result.available) if result.available is not None else None
            progress(seen, expected)
        url = _href((body.get("links") or {}).get("next")) if entries else None
        params = None  # the next link carries the query
    return result


def structure_record(item: NamedStructure) -> dict:
    """``item`` as a JSON-lines record (``id``, ``formula``, ``lattice``, ``species``,
    ``frac_coords``, ``source``); a disordered site's species is ``{element: occupancy}``."""
    s = item.structure
    species = [
        site.specie.symbol
        if site.is_ordered
        else {el.symbol: float(occ) for el, occ in site.species.items()}
        for site in s
    ]
    return {
        "id": item.id,
        "formula": s.composition.reduced_formula,
        "source": item.source,
        "lattice": s.lattice.matrix.tolist(),
        "species": species,
        "frac_coords": s.frac_coords.tolist(),
    }


def write_jsonl(items: Iterable[NamedStructure], path: str | Path) -> int:
    """Write structures as JSON lines (gzipped when ``path`` ends in ``.gz``); returns the count."""
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    n = 0
    with opener(path, "wt", encoding="utf-8") as fh:
        for item in items:
            fh.write(json.dumps(structure_record(item)) + "\n")
            n += 1
    return n
