"""One GPU batch of the long training runs (issues 12 and 16), run side by side on a lent GPU.

    python benchmarks/gpu_batch.py --runs /tmp/gpu-runs --out "$OUT" --deadline-s 540

Runs, each as its own single-threaded process on the one GPU. Measured on one H200
(2026-11-30, docs/benchmarks.md): 18 such processes gave each about one CPU core's speed, so
the formation-energy retrain belongs alone on the card (``--only eform-long``, with ``--eform-resume``
to continue ``RUNS/eform-long/checkpoint.pt``), and the CTE seeds in a few processes:

* ``ablation.py run log-huber`` seeds 0–4, 120 epochs; ``combined`` and ``alignn-log-huber``
  seeds 0–4, 150 epochs (the 5-seed ensembles and the ALIGNN lever of issue 16);
* ``eform_long.py`` (the formation-energy retrain of issue 12) with ``--eform-epochs`` epochs:
  seed 0 and seed 1 with the shipped MSE loss (an ensemble of two) and seed 0 with an L1 loss
  (the loss lever of issue 16), each stopped cleanly at the deadline if not finished.

If half the runs have failed, the rest are stopped at once (a broken environment costs
seconds, not the whole lease), and each failed run's log tail is printed.

Every run's log and model directory go under ``--runs``; when all have ended (or at
``--deadline-s``, when the rest are stopped) each group is packed into ``--out/GROUP.tgz`` and a
table of the runs' last lines is printed. Data come from ``CRYSTAL_SCREEN_DATA``. The device
machine's own Python lacked pymatgen, vesin (no longer a dependency) and pydantic and had pandas 3:
they were carried as cp312 wheels (see the issue-16 note of 2026-11-30).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: group → [(run name, arguments after the script)]
JOBS = {
    "cte-log-huber": [
        (
            f"log-huber-s{s}",
            ["ablation.py", "run", "log-huber", "--seed", str(s), "--epochs", "120"],
        )
        for s in range(5)
    ],
    "cte-combined": [
        (f"combined-s{s}", ["ablation.py", "run", "combined", "--seed", str(s), "--epochs", "150"])
        for s in range(5)
    ],
    "cte-alignn": [
        (
            f"alignn-log-huber-s{s}",
            ["ablation.py", "run", "alignn-log-huber", "--seed", str(s), "--epochs", "150"],
        )
        for s in range(5)
    ],
}
#: eform runs: (name suffix, extra arguments of eform_long.py)
EFORM = [("", []), ("-s1", ["--seed", "1"]), ("-l1", ["--loss", "l1"])]


def command(args: list[str], runs: Path, device: str) -> list[str]:
    """The full command of one run (its outputs under ``runs``)."""
    script, *rest = args
    if script == "ablation.py":
        rest += ["--runs", str(runs / "cte"), "--device", device, "--threads", "1"]
    return [sys.executable, str(HERE / script), *rest]


def last_line(log: Path) -> str:
    """The last non-empty line of a log (progress bars' carriage returns split lines too)."""
    text = log.read_text(errors="replace").replace("\r", "\n") if log.is_file() else ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:150] if lines else "(no output)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="folder for the packed results")
    parser.add_argument("--deadline-s", type=float, default=540.0)
    parser.add_argument("--eform-epochs", type=int, default=150)
    parser.add_argument("--device", default="cuda")
    parser.add_argument(
        "--eform-resume",
        action="store_true",
        help="continue the eform runs from their checkpoints under --runs (else start afresh)",
    )
    parser.add_argument("--only", nargs="*", help="run only these groups (e.g. for a smoke test)")
    parser.add_argument("--epochs", type=int, help="override every run's epochs (smoke test)")
    args = parser.parse_args()
    start = time.monotonic()
    logs = args.runs / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    jobs = dict(JOBS)
    eform_budget = args.deadline_s - 90  # counted from train(): leaves time to write and pack
    for suffix, extra in EFORM:  # one group each: a packed eform run is ~8 MB
        name = f"eform-long{suffix}"
        jobs[name] = [
            (
                name,
                [
                    "eform_long.py",
                    *extra,
                    "--name",
                    f"eform-cgcnn-mp-long{suffix}",
                    "--out",
                    str(args.runs / name),
                    "--epochs",
                    str(args.eform_epochs),
                    "--device",
                    args.device,
                    "--threads",
                    "1",
                    *([] if args.eform_resume else ["--fresh"]),
                    "--budget-s",
                    str(eform_budget),
                ],
            )
        ]
    if args.only:
        jobs = {g: j for g, j in jobs.items() if g in args.only}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    running: dict[str, tuple[str, subprocess.Popen]] = {}
    for group, runs in jobs.items():
        for name, job_args in runs:
            if args.epochs:
                flag = "--epochs"
                job_args = list(job_args)
                job_args[job_args.index(flag) + 1] = str(args.epochs)
            with (logs / f"{name}.log").open("w") as log:
                proc = subprocess.Popen(
                    command(job_args, args.runs, args.device),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=HERE.parent,
                )
            running[name] = (group, proc)
    print(f"started {len(running)} runs", flush=True)
    packed: set[str] = set()
    failed: set[str] = set()
    last_report = 0.0
    while True:
        elapsed = time.monotonic() - start
        alive = {n for n, (_, p) in running.items() if p.poll() is None}
        for name in sorted(set(running) - alive - failed):
            if running[name][1].returncode != 0:
                failed.add(name)
                tail = (logs / f"{name}.log").read_text(errors="replace").splitlines()[-25:]
                print(f"--- {name} failed:\n" + "\n".join(tail), flush=True)
        if alive and len(failed) >= len(running) / 2:
            print(f"{len(failed)} of {len(running)} runs failed: stopping the rest", flush=True)
            elapsed = args.deadline_s + 1
        for group in jobs:
            if group not in packed and not {n for n, _ in jobs[group]} & alive:
                pack(group, jobs[group], args.runs, args.out)
                packed.add(group)
        if not alive:
            break
        if elapsed > args.deadline_s:
            for name in alive:
                running[name][1].terminate()
            time.sleep(5)
            for name in alive:
                running[name][1].kill()
            for group in set(jobs) - packed:
                pack(group, jobs[group], args.runs, args.out)
            break
        if elapsed - last_report > 120:
            last_report = elapsed
            print(f"[{elapsed:5.0f} s] {len(alive)} running", flush=True)
            for name in sorted(alive):
                print(f"    {name}: {last_line(logs / f'{name}.log')}", flush=True)
        time.sleep(2)
    print(f"\nall ended after {time.monotonic() - start:.0f} s", flush=True)
    for name, (_, proc) in sorted(running.items()):
        print(f"{name:24s} rc={proc.returncode}  {last_line(logs / f'{name}.log')}", flush=True)
    return 0


def pack(group: str, runs: list[tuple[str, list[str]]], root: Path, out: Path) -> None:
    """``out/GROUP.tgz``: the group's logs and model directories."""
    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out / f"{group}.tgz", "w:gz") as tar:
        for name, _ in runs:
            for path in (root / "logs" / f"{name}.log", root / "cte" / name, root / name):
                if path.exists():  # without the resumable checkpoint (the model holds the best)
                    tar.add(
                        path,
                        arcname=str(path.relative_to(root)),
                        filter=lambda info: None if info.name.endswith("checkpoint.pt") else info,
                    )


if __name__ == "__main__":
    sys.exit(main())
