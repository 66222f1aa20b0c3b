"""Hostile and broken input (issue 13): every bad input is refused with a reason that names it,
or read as a correct partial result with the bad entries listed, in bounded memory and time.

The corpus is generated at test time (bombs are written in compressed form into a temporary
folder and never committed). The CLI runs in a subprocess under ``RLIMIT_AS`` (address space,
:data:`MEMORY_CAP`); several CLI invocations share one subprocess (``engine.apps.cli.main.main`` is
called per case) because each start costs seconds on the test machine.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
from pymatgen.core import Lattice, Structure

from engine.io import ReadLimits, read_structures
from engine.io.output import atomic_write, escape_cell, unescape_cell

ROOT = Path(__file__).resolve().parent.parent
#: Address-space cap of every CLI subprocess. Importing torch maps ~1 GB of address space; a
#: plain `predict` peaks at ~0.56 GB resident (measured), so 1.5 GB leaves room for work but not
#: for a bomb.
MEMORY_CAP = int(1.5 * 1024**3)
#: Wall-clock bound of one CLI subprocess, in seconds (a start alone takes ~13 s on 2 busy cores).
TIME_CAP = 240
MB = 1024**2


# ----------------------------------------------------------------------------- the corpus


def nacl(a: float = 5.64) -> Structure:
    return Structure(
        Lattice.cubic(a),
        ["Na", "Na", "Cl", "Cl"],
        [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0], [0, 0.5, 0]],
    )


def cif(structure: Structure) -> str:
    from pymatgen.io.cif import CifWriter

    return str(CifWriter(structure))


def poscar(structure: Structure) -> str:
    from pymatgen.io.vasp import Poscar

    return Poscar(structure).get_str()


def record(structure: Structure, **extra) -> dict:
    return {
        "lattice": structure.lattice.matrix.tolist(),
        "species": [s.species_string for s in structure],
        "frac_coords": structure.frac_coords.tolist(),
        **extra,
    }


def big_cif(n: int, group: str = "P 1") -> str:
    """A CIF of ``n`` distinct Na positions in a 300 Å cell of space group ``group`` (no
    symmetry-operation loop, so a reader must assume the group's largest expansion)."""
    rows = "\n".join(f"Na{i} Na {i / n:.6f} {(i * 7 % n) / n:.6f} 0.5 1" for i in range(n))
    return (
        "data_big\n_cell_length_a 300\n_cell_length_b 300\n_cell_length_c 300\n"
        "_cell_angle_alpha 90\n_cell_angle_beta 90\n_cell_angle_gamma 90\n"
        f"_symmetry_space_group_name_H-M '{group}'\nloop_\n_atom_site_label\n"
        "_atom_site_type_symbol\n"
        "_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\n_atom_site_occupancy\n"
        f"{rows}\n"
    )


def gz_bomb(path: Path, first: bytes, expanded: int) -> None:
    """A gzip file holding ``first`` then ``expanded`` bytes of spaces (no newline)."""
    with gzip.open(path, "wb", compresslevel=1) as fh:
        fh.write(first)
        chunk = b" " * MB
        for _ in range(expanded // MB):
            fh.write(chunk)


def zip_bytes(entries: dict[str, bytes], *, symlink: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = 0o120777 << 16  # a symbolic link entry
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


def nested_zip(depth: int) -> bytes:
    data = zip_bytes({"deep.cif": cif(nacl()).encode()})
    for k in range(depth):
        data = zip_bytes({f"level{k}.zip": data})
    return data


def spaces_zip(n: int, size: int) -> bytes:
    """``n`` entries of ``size`` spaces each: a small zip that expands to n × size bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for k in range(n):
            with zf.open(f"part{k}.cif", "w", force_zip64=True) as fh:
                for _ in range(size // MB):
                    fh.write(b" " * MB)
    return buf.getvalue()


GOOD_CIF = cif(nacl())
CELL_A = "_cell_length_a"


def cif_with(old: str, new: str) -> str:
    assert old in GOOD_CIF
    return GOOD_CIF.replace(old, new, 1)


def site_line(label: str) -> str:
    return next(line for line in GOOD_CIF.splitlines() if f" {label} " in f" {line} ")


#: name → (content, expected reason fragment). Content None: built specially in build_corpus.
BAD: dict[str, tuple[bytes | None, str]] = {
    # memory
    "huge-line.jsonl": (None, "longer than"),
    "bomb.cif.gz": (None, "per-file limit"),
    "nest.zip": (nested_zip(5), "nested more than"),
    "traversal.zip": (zip_bytes({"../../evil.cif": GOOD_CIF.encode()}), "leaves the archive"),
    "absolute.zip": (zip_bytes({"/etc/evil.cif": GOOD_CIF.encode()}), "leaves the archive"),
    "link.zip": (zip_bytes({}, symlink="passwd.cif"), "symbolic link"),
    # hangs: cells far over the atom limit are refused before parsing
    "50k-atoms.cif": (big_cif(50_000).encode(), "atom sites, more than the limit"),
    "600-atoms.cif": (big_cif(600).encode(), "600 distinct atom positions"),
    "symmetry-bomb.cif": (big_cif(11, "F m -3 m").encode(), "symmetry operations could expand"),
    "POSCAR-huge-counts": (
        poscar(nacl()).replace("\n2 2\n", "\n2000000 2\n").encode(),
        "more than the limit",
    ),
    "huge-frame.xyz": (b'1000000\nLattice="5 0 0 0 5 0 0 0 5"\nNa 0 0 0\n', "1000000 atoms"),
    "huge-record.jsonl": (
        json.dumps(
            {
                "id": "huge",
                "lattice": [[50, 0, 0], [0, 50, 0], [0, 0, 50]],
                "species": ["Na"] * 100_000,
                "frac_coords": [[0, 0, 0]] * 100_000,
            }
        ).encode(),
        "100000 sites",
    ),
    "huge-sites.json": (
        json.dumps(
            {
                "@module": "pymatgen.core.structure",
                "@class": "Structure",
                "lattice": {"matrix": [[50, 0, 0], [0, 50, 0], [0, 0, 50]]},
                "sites": [{"species": [{"element": "Na", "occu": 1}], "abc": [0, 0, 0]}] * 20_000,
            }
        ).encode(),
        "20000 sites",
    ),
    # unbounded local reads (built in build_corpus)
    "fifo.cif": (None, "named pipe"),
    "socket.cif": (None, "socket"),
    "outside-link.cif": (None, "outside the input folder"),
    "zero-link.cif": (None, "outside the input folder"),
    # one bad line never loses the batch (good lines of these files are checked separately)
    "nested.jsonl": (None, "nested too deeply"),
    "latin1.jsonl": (None, "not valid UTF-8"),
    "binary.jsonl": (b"\x89PNG\r\n\x1a\n\x00\x00\x00garbage\xff" * 10, "binary file"),
    "utf16-no-bom.cif": (GOOD_CIF.encode("utf-16-le"), "UTF-16"),
    # wrong answers
    "POSCAR-counts-low": (
        poscar(nacl()).replace("\n2 2\n", "\n1 2\n").encode(),
        "coordinate lines",
    ),
    "POSCAR-counts-high": (
        poscar(nacl()).replace("\n2 2\n", "\n2 9\n").encode(),
        "coordinate lines",
    ),
    "negative-cell.cif": (
        cif_with(f"{CELL_A}   5.64", f"{CELL_A}   -5.64").encode(),
        "not positive",
    ),
    "zero-angle.cif": (
        cif_with("_cell_angle_beta   90.00000000", "_cell_angle_beta 0").encode(),
        "not between 0 and 180",
    ),
    "two-at-one.cif": (
        cif_with(
            site_line("Cl2"), site_line("Cl2") + "\n" + site_line("Cl2").replace("Cl2", "Cl9")
        ).encode(),
        "'Cl2' and 'Cl9'",
    ),
    "overfull.json": (None, "sum to 1.5, more than 1"),
    "truncated.cif": (GOOD_CIF[: GOOD_CIF.index(site_line("Cl3")) + 20].encode(), "truncated"),
    "POSCAR-no-species": (
        "\n".join(
            ["made by hand"]
            + [
                " ".join(line.split()[:3]) if k > 7 else line
                for k, line in enumerate(poscar(nacl()).splitlines())
                if k not in (0, 5)
            ]
        ).encode(),
        "species line",
    ),
    "nan-coords.jsonl": (
        json.dumps(record(nacl()) | {"frac_coords": [[float("nan")] * 3] * 4}).encode(),
        "not finite",
    ),
    "flat-cell.jsonl": (
        json.dumps(record(nacl()) | {"lattice": [[3, 0, 0], [0, 3, 0], [3, 3, 0]]}).encode(),
        "degenerate",
    ),
    "squashed.cif": (cif(nacl(0.6)).encode(), "apart"),
    "unknown-element.cif": (GOOD_CIF.replace("Cl", "Xx").encode(), "unknown element"),
    "frame-short.xyz": (b'4\nLattice="5 0 0 0 5 0 0 0 5"\nNa 0 0 0\n', "only 1 atom lines"),
    "molecule.xyz": (b"2\n\nNa 0 0 0\nCl 2.8 2.8 2.8\n", "Lattice"),
    "empty.cif": (b"", "empty"),
    "whitespace.vasp": (b"   \n\n  ", "empty"),
    "no-atoms.cif": (GOOD_CIF.split("loop_\n _atom_site")[0].encode(), "no atoms"),
    "garbage.cif": (b"\x89PNG\r\n\x1a\n\x00\x00garbage\xff\xfe" * 5, "binary"),
    "not-structure.json": (b'{"hello": "world"}', None),  # in a folder: skipped, not an error
    "corrupt.zip": (b"PK\x03\x04 this is not a zip" * 10, "could not open the archive"),
    "empty.jsonl": (b"\n\n", "empty"),
    "deep.json": (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
}

GOOD_IDS = {"good-cif", "good-poscar", "good-zip", "j-good-1", "j-good-2", "n-good", "l-good"}


def build_corpus(folder: Path) -> dict[str, str]:
    """Write the mixed corpus into ``folder``; returns bad file name → expected reason."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "good-cif.cif").write_text(GOOD_CIF)
    (folder / "good-poscar.vasp").write_text(poscar(nacl(5.5)))
    (folder / "good.zip").write_bytes(
        zip_bytes(
            {
                "inner/good-zip.cif": GOOD_CIF.encode(),
                "inner/README.txt": b"notes",
                "inner/.hidden.cif": b"junk",
                "../escape.cif": b"junk",
            }
        )
    )
    expected: dict[str, str] = {}
    for name, (content, reason) in BAD.items():
        if content is not None:
            (folder / name).write_bytes(content)
            if reason is not None:
                expected[name] = reason
    # memory
    (folder / "huge-line.jsonl").write_bytes(
        json.dumps(record(nacl(), id="l-good")).encode() + b"\n" + b"x" * (6 * MB) + b"\n"
    )
    expected["huge-line.jsonl line 2"] = BAD["huge-line.jsonl"][1]
    gz_bomb(folder / "bomb.cif.gz", b"data_bomb\n", 100 * MB)
    expected["bomb.cif.gz"] = BAD["bomb.cif.gz"][1]
    # local reads
    os.mkfifo(folder / "fifo.cif")
    expected["fifo.cif"] = BAD["fifo.cif"][1]
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / "socket.cif"))
    sock.close()
    expected["socket.cif"] = BAD["socket.cif"][1]
    outside = folder.parent / "outside.cif"
    outside.write_text(GOOD_CIF)
    (folder / "outside-link.cif").symlink_to(outside)
    expected["outside-link.cif"] = BAD["outside-link.cif"][1]
    (folder / "zero-link.cif").symlink_to("/dev/zero")
    expected["zero-link.cif"] = BAD["zero-link.cif"][1]
    # one bad line
    good1 = json.dumps(record(nacl(), id="j-good-1"))
    good2 = json.dumps(record(nacl(5.5), id="j-good-2"))
    (folder / "nested.jsonl").write_text(good1 + "\n" + "[" * 100_000 + "]" * 100_000 + "\n")
    expected["nested.jsonl line 2"] = BAD["nested.jsonl"][1]
    (folder / "latin1.jsonl").write_bytes(
        good2.encode() + b"\n" + json.dumps(record(nacl(), id="x")).encode()[:-2] + b'\xe9"}\n'
    )
    expected["latin1.jsonl line 2"] = BAD["latin1.jsonl"][1]
    d = nacl().as_dict()
    d["sites"][1]["species"] = [{"element": "Na", "occu": 1}, {"element": "K", "occu": 0.5}]
    (folder / "overfull.json").write_text(json.dumps(d))
    expected["overfull.json"] = BAD["overfull.json"][1]
    (folder / "n-good.cif").write_text(GOOD_CIF)  # a second good CIF after the bad ones
    return expected


def find(errors, name: str) -> list:
    """Errors whose source names ``name`` (the file, or the file and its line)."""
    return [
        e
        for e in errors
        if e.source.endswith(name)
        or f"/{name} " in e.source
        or e.source.startswith(f"{name} ")
        or f"/{name}" in e.source
    ]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("hostile")
    expected = build_corpus(root / "mixed")
    return root / "mixed", expected


# ----------------------------------------------------------------------------- the reader


def test_corpus_is_big_enough(corpus):
    folder, expected = corpus
    assert len(expected) >= 40
    assert len([p for p in folder.iterdir()]) >= 45


def test_reader_lists_every_bad_entry_and_keeps_every_good_one(corpus):
    folder, expected = corpus
    start = time.perf_counter()
    batch = read_structures(folder)
    elapsed = time.perf_counter() - start
    assert sorted(batch.ids) == sorted(GOOD_IDS)
    for name, reason in expected.items():
        hits = find(batch.errors, name)
        assert hits, f"{name} not listed; errors: {[str(e) for e in batch.errors]}"
        assert any(reason in e.reason for e in hits), (name, [e.reason for e in hits])
    for err in batch.errors:
        assert str(folder) not in err.source and "Traceback" not in err.reason
        assert err.source.startswith("mixed/")
    # hidden entries are listed as skipped (never dropped silently); '..' is an error
    hidden = [s for s in batch.skipped if s.endswith(".hidden.cif")]
    assert hidden and hidden[0].reason == "hidden"
    assert find(batch.errors, "good.zip/../escape.cif")
    assert elapsed < 60, f"reading the corpus took {elapsed:.1f} s"


def test_total_budget_stops_a_zip_bomb_and_names_the_entry():
    data = spaces_zip(4, 40 * MB)
    assert len(data) < MB
    batch = read_structures(data, name="bomb.zip", limits=ReadLimits(max_bytes=100 * MB))
    assert batch.items == []
    # 2 × 40 MB read (and found empty), the third entry crosses 100 MB: reading stops there
    assert [e.source for e in batch.errors] == [f"bomb.zip/part{k}.cif" for k in range(3)]
    assert "in total" in batch.errors[-1].reason and "empty" in batch.errors[0].reason


def test_line_limit_and_gz_bomb_in_json_lines(tmp_path):
    path = tmp_path / "bomb.jsonl.gz"
    gz_bomb(path, json.dumps(record(nacl(), id="first")).encode() + b"\n", 200 * MB)
    batch = read_structures(path, limits=ReadLimits(max_bytes=64 * MB))
    assert batch.ids == ["first"]
    assert [e.source for e in batch.errors] == ["bomb.jsonl.gz"]
    assert "in total" in batch.errors[0].reason


def test_top_level_device_fifo_and_missing_are_refused(tmp_path):
    os.mkfifo(tmp_path / "pipe.cif")
    (tmp_path / "zero.cif").symlink_to("/dev/zero")
    for name, reason in (
        ("pipe.cif", "named pipe"),
        ("zero.cif", "character device"),
        ("gone.cif", "not found"),
    ):
        batch = read_structures(tmp_path / name)
        assert [e.source for e in batch.errors] == [name]
        assert reason in batch.errors[0].reason


def test_disordered_sites_and_vacancies_are_read():
    line = site_line("Cl2")
    text = cif_with(line, line[:-1] + "0.5\n" + line.replace("Cl", "Br")[:-1] + "0.4")
    batch = read_structures(text.encode(), name="disorder.cif")
    assert batch.errors == []
    s = batch.structures[0]
    assert not s.is_ordered
    occ = {str(sp): round(o, 3) for site in s for sp, o in site.species.items() if o < 1}
    assert occ == {"Cl": 0.5, "Br": 0.4}  # a vacancy of 0.1 on that site


def test_formula_escaping_keeps_numbers():
    assert escape_cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert escape_cell("-x") == "'-x" and escape_cell("@a") == "'@a" and escape_cell("+1") == "'+1"
    assert escape_cell(-1.5e-5) == -1.5e-5 and escape_cell("NaCl") == "NaCl"
    assert unescape_cell(escape_cell("=1+1")) == "=1+1"


def test_concurrent_writers_leave_one_complete_file(tmp_path):
    target = tmp_path / "out.csv"
    contents = [f"writer {k}\n" * 20_000 for k in range(8)]

    def write(text: str) -> None:
        atomic_write(target, lambda tmp: tmp.write_text(text))

    threads = [threading.Thread(target=write, args=(c,)) for c in contents]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert target.read_text() in contents
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]  # no temporary file left


# ----------------------------------------------------------------------------- the CLI

DRIVER = r"""
import contextlib, io, json, resource, sys, time
from engine.apps.cli.main import main
out = []
for args in json.loads(sys.argv[1]):
    err, std = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
        code = main(args)
    out.append({"args": args, "code": code, "err": err.getvalue(), "out": std.getvalue(),
                "seconds": time.perf_counter() - start})
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"cases": out, "peak_bytes": peak}))
"""


def run_capped(argv: list[str]) -> subprocess.CompletedProcess:
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))

    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=TIME_CAP, preexec_fn=cap, env=env
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    from engine.core.config import shipped_model_dir

    src = shipped_model_dir() / "cte-cgcnn-aflow"
    root = tmp_path_factory.mktemp("models")
    nan = root / "nan-normaliser"
    shutil.copytree(src, nan)
    card = json.loads((nan / "model.json").read_text())
    card["normalizer"]["std"] = float("nan")
    (nan / "model.json").write_text(json.dumps(card))
    evil = root / "evil-weights"
    shutil.copytree(src, evil)

    class Evil:
        def __reduce__(self):
            return (print, ("PWNED-BY-PICKLE",))

    (evil / "weights.pt").write_bytes(pickle.dumps({"w": Evil()}))
    return {"good": src, "nan": nan, "evil": evil}


def test_cli_mixed_batch_is_predicted_and_bad_entries_listed(corpus, tmp_path):
    """The real CLI in a subprocess: exit 0, every good entry predicted, every bad one named."""
    folder, expected = corpus
    out = tmp_path / "pred.csv"
    start = time.perf_counter()
    proc = run_capped(
        [
            sys.executable,
            "-m",
            "engine",
            "predict",
            "--model",
            "cte-cgcnn-aflow",
            "--input",
            str(folder),
            "--output",
            str(out),
        ]
    )
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    import pandas as pd

    table = pd.read_csv(out)
    assert sorted(table["id"]) == sorted(GOOD_IDS)
    listed = proc.stderr.split("could not be used:")[1]
    assert str(folder) not in proc.stderr
    lines = [ln.strip() for ln in listed.splitlines() if ln.startswith("  ")]
    total = len(expected) + 1  # and good.zip/../escape.cif
    assert len(lines) == 21 and lines[-1] == f"... and {total - 20} more"  # 20 named, then counted
    assert all(ln.startswith("mixed/") for ln in lines[:-1])
    assert f"{total} entries could not be used" in proc.stderr
    assert elapsed < TIME_CAP


def test_cli_refusals_are_one_error_line_in_bounded_memory(corpus, models, tmp_path):
    """Many CLI invocations in one capped subprocess: each exits 2 with one `error:` line that
    names the input, or gives a correct partial result; the subprocess stays under the cap."""
    folder, _ = corpus
    bomb = tmp_path / "only-bomb.jsonl.gz"
    gz_bomb(bomb, b"", 300 * MB)
    os.mkfifo(tmp_path / "pipe.cif")
    (tmp_path / "zero.cif").symlink_to("/dev/zero")
    header_only = tmp_path / "labels"
    header_only.mkdir()
    (header_only / "labels.csv").write_text("id,target\n")
    (header_only / "a.cif").write_text(GOOD_CIF)
    labelled = tmp_path / "labelled.jsonl"
    rows = [
        record(nacl(), id="=cmd|calc", y=1e300),
        record(nacl(5.5), id="dup", y=1.0),
        record(nacl(5.6), id="dup", y=2.0),
        record(nacl(5.7), id="ok", y=float("inf")),
        record(nacl(5.8), id="fine", y=-3.5e-6),
    ]
    labelled.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    isolated = tmp_path / "isolated.cif"
    isolated.write_text(
        cif(Structure(Lattice.cubic(20), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]))
    )
    existing = tmp_path / "existing-file"
    existing.write_text("x")
    good = str(folder / "good-cif.cif")
    model = str(models["good"])
    cases = {
        "bomb": ["predict", "--model", model, "--input", str(bomb), "--max-bytes", "100M"],
        "fifo": ["predict", "--model", model, "--input", str(tmp_path / "pipe.cif")],
        "zero": ["predict", "--model", model, "--input", str(tmp_path / "zero.cif")],
        "atoms": ["predict", "--model", model, "--input", str(folder / "50k-atoms.cif")],
        "limit": ["predict", "--model", model, "--input", good, "--max-atoms", "2"],
        "header": ["evaluate", "--model", model, "--data", str(header_only), "--target", "target"],
        "nan": ["predict", "--model", str(models["nan"]), "--input", good],
        "pickle": ["predict", "--model", str(models["evil"]), "--input", good],
        "electrolyte": [
            "screen",
            "--model",
            model,
            "--candidates",
            good,
            "--quiet",
            "--electrolyte",
            "Y" * 100_000,
        ],
        "typo": [
            "screen",
            "--model",
            model,
            "--candidates",
            good,
            "--quiet",
            "--electrolyte",
            "YSZ=abc",
        ],
        "out": [
            "train",
            "--data",
            str(labelled),
            "--target",
            "y",
            "--out",
            str(existing),
            "--epochs",
            "1",
        ],
        "evaluate": [
            "evaluate",
            "--model",
            model,
            "--data",
            str(labelled),
            "--target",
            "y",
            "--json",
            "--output",
            str(tmp_path / "eval.csv"),
        ],
        "screen": [
            "screen",
            "--model",
            model,
            "--candidates",
            str(folder),
            "--quiet",
            "--electrolyte",
            "YSZ=10.5e-6",
            "--output",
            str(tmp_path / "screen.csv"),
        ],
        "isolated": ["predict", "--model", model, "--input", str(isolated)],
    }
    proc = run_capped([sys.executable, "-c", DRIVER, json.dumps(list(cases.values()))])
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    got = dict(zip(cases, report["cases"]))
    assert report["peak_bytes"] < MEMORY_CAP

    def one_error(case: str, *fragments: str) -> str:
        r = got[case]
        lines = [ln for ln in r["err"].splitlines() if ln.strip()]
        assert r["code"] == 2, (case, r["err"][-1500:])
        assert len(lines) == 1 and lines[0].startswith("error: "), (case, lines)
        for fragment in fragments:
            assert fragment in lines[0], (case, fragment, lines[0])
        assert "Traceback" not in r["err"] and len(lines[0]) <= 700
        return lines[0]

    one_error("bomb", "only-bomb.jsonl.gz", "in total")
    one_error("fifo", "pipe.cif", "named pipe")
    one_error("zero", "zero.cif", "character device")
    one_error("atoms", "50k-atoms.cif", "--max-atoms")
    one_error("limit", "good-cif.cif", "limit of 2 atoms")
    one_error("header", "labels.csv", "header but no rows")
    one_error("nan", "nan-normaliser", "normaliser")
    line = one_error("pickle", "weights.pt", "untrusted")
    assert "weights_only" not in line and "PWNED" not in got["pickle"]["out"] + got["pickle"]["err"]
    line = one_error("electrolyte", "100000 characters")
    assert "Y" * 100 not in line
    line = one_error("typo", "'abc' is not a number", "YSZ=10.5e-6")
    assert "abc=10.5e-6" not in line
    one_error("out", "existing-file", "--out")
    assert got["out"]["seconds"] < 30  # refused before reading or training
    # evaluate: duplicate ids with different labels dropped and listed, strict JSON
    ev = got["evaluate"]
    assert ev["code"] == 0, ev["err"]
    assert "id 'dup' appears 2 times with different labels" in ev["err"]
    assert "label 'y' = inf is not a finite number" in ev["err"]
    metrics = json.loads(ev["out"].strip().splitlines()[-1])  # strict: no NaN/Infinity
    assert "Infinity" not in ev["out"] and "NaN" not in ev["out"]
    assert metrics["n"] >= 1
    csv_text = (tmp_path / "eval.csv").read_text()
    assert "'=cmd|calc" in csv_text and ",-3.5e-06" in csv_text.replace("-3.5e-6", "-3.5e-06")
    # screen: partial result, file names (never server paths) in the source column
    sc = got["screen"]
    assert sc["code"] == 0, sc["err"][-2000:]
    screen_csv = (tmp_path / "screen.csv").read_text()
    assert str(tmp_path) not in screen_csv and "mixed/good-cif.cif" in screen_csv
    # the isolated-atom warning reaches the user
    iso = got["isolated"]
    assert iso["code"] == 0 and "note:" in iso["err"] and "no neighbour" in iso["err"]


# ----------------------------------------------------------------------------- the dashboard


def test_dashboard_upload_paths_survive_the_corpus(corpus, tmp_path):
    """Every corpus file, uploaded alone and all together, through the dashboard's upload
    functions: no exception, failures named by the uploaded file, the good ones loaded."""
    from dashboard.uploads import save_upload, upload_problems
    from engine.io.datasets import load_dataset

    folder, expected = corpus
    files = [
        (p.name, p.read_bytes())
        for p in sorted(folder.iterdir())
        if p.is_file() and not p.is_symlink()
    ]
    for name, data in files:
        batch = read_structures([(name, data)])
        assert len(batch.items) + len(batch.errors) >= 1, name
        for err in batch.errors:
            assert err.source.startswith(name), (name, err.source)
        path = save_upload([(name, data)], root=tmp_path, session="s")
        try:
            ds = load_dataset(path)
        except ValueError as exc:  # a refused upload is a message, never a crash
            assert str(exc)
            continue
        assert all(str(tmp_path) not in e.source for e in ds.errors)
    assert sorted(read_structures(files).ids) == sorted(GOOD_IDS)
    # a labelled zip with hostile entries: listed, never written outside the upload folder
    data = zip_bytes(
        {
            "set/id_prop.csv": b"good-cif,1.0\n",
            "set/good-cif.cif": GOOD_CIF.encode(),
            "../../escape.cif": b"x",
            "set/.hidden.cif": b"x",
        }
    )
    path = save_upload([("set.zip", data)], root=tmp_path, session="s")
    assert not list(tmp_path.rglob("escape.cif"))
    problems = {p["source"]: p["reason"] for p in upload_problems(path)}
    assert "leaves the archive" in problems["set.zip/../../escape.cif"]
    assert problems["set.zip/set/.hidden.cif"] == "hidden"
    assert load_dataset(path).ids == ["good-cif"]


def test_upload_session_budget_sweep_and_removal(tmp_path):
    from dashboard.uploads import UploadError, remove_session_uploads, save_upload, sweep_uploads

    save_upload([("a.cif", GOOD_CIF.encode())], root=tmp_path, session="alice")
    with pytest.raises(UploadError, match="per session"):
        save_upload([("b.cif", b"x" * 5000)], root=tmp_path, session="alice", budget_bytes=4000)
    save_upload([("c.cif", GOOD_CIF.encode())], root=tmp_path, session="bob")
    remove_session_uploads("bob", root=tmp_path)
    assert not (tmp_path / "bob").exists()
    old = time.time() - 10_000
    os.utime(tmp_path / "alice" / ".last_used", (old, old))
    assert sweep_uploads(tmp_path, max_age_s=3600) == [tmp_path / "alice"]
    assert not (tmp_path / "alice").exists()


def test_models_with_wrong_or_non_finite_weights_are_refused_naming_the_file(models, tmp_path):
    import torch

    from engine.catalog.names import load_model
    from engine.store.card import ModelLoadError

    state = torch.load(models["good"] / "weights.pt", weights_only=True)
    name = next(k for k, v in state.items() if v.is_floating_point() and v.dim() == 2)
    for case, change in (
        ("shape", lambda t: t[:, :1].clone()),
        ("nan", lambda t: t * float("nan")),
    ):
        bad = tmp_path / case
        shutil.copytree(models["good"], bad)
        torch.save({**state, name: change(state[name])}, bad / "weights.pt")
        with pytest.raises(ModelLoadError) as info:
            load_model(bad)
        message = str(info.value)
        assert str(bad / "weights.pt") in message
        assert ("size mismatch" in message) if case == "shape" else ("NaN or infinite" in message)


def test_disordered_structure_reaching_prediction_fails_clearly_or_is_predicted():
    """Until the graph path accepts disorder (virtual crystal, SOFC issue) a disordered structure
    is one named error with a plain reason; the ordered one beside it is predicted."""
    from engine.inference.prediction import predict

    line = site_line("Cl2")
    text = cif_with(line, line[:-1] + "0.5\n" + line.replace("Cl", "Br")[:-1] + "0.4")
    result = predict("cte-cgcnn-aflow", [("dis.cif", text.encode()), ("ok.cif", GOOD_CIF.encode())])
    assert "ok" in set(result.table["id"])
    if "dis" not in set(result.table["id"]):
        assert [e.source for e in result.errors] == ["dis.cif"]
        assert result.errors[0].reason.startswith("disordered sites (partial occupancies)")


def test_deeply_nested_folders_stop_with_a_named_error(tmp_path):
    deep = tmp_path.joinpath(*["d"] * 80)
    deep.mkdir(parents=True)
    (deep / "x.cif").write_text(GOOD_CIF)
    (tmp_path / "top.cif").write_text(GOOD_CIF)
    batch = read_structures(tmp_path)
    assert batch.ids == ["top"]
    assert [e.reason for e in batch.errors] == ["folders nested more than 64 deep are not read"]


def test_model_with_a_non_finite_graph_config_is_refused(models, tmp_path):
    """Config fields are bounded (pydantic), so NaN fails validation at load, naming the file."""
    from engine.catalog.names import load_model
    from engine.store.card import ModelLoadError

    bad = tmp_path / "nan-cutoff"
    shutil.copytree(models["good"], bad)
    card = json.loads((bad / "model.json").read_text())
    card["graph"]["cutoff"] = float("nan")
    (bad / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelLoadError) as info:
        load_model(bad)
    assert str(bad / "model.json") in str(info.value) and "graph.cutoff" in str(info.value)
