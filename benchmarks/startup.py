"""What starting costs: ``--help`` of every entry point, the digits study's ``--dry-run``, launch to the first trial's
first report (with the driver's peak memory until then and what the console shows), and the fixed cost of each
further trial. Prints figures, each beside a reference measured in the same run; asserts nothing.

    python benchmarks/startup.py                  # all four parts (a few minutes on 2 busy cores)
    python benchmarks/startup.py --only help      # the --help part alone (seconds)
    python benchmarks/startup.py --only dryrun cold --checkout ../main   # another checkout's scripts, to compare

Figures:

* ``--help``: CPU seconds (user + system, ``getrusage`` of the child) of ``ENTRY --help``, the median of
  ``--repeat`` runs, and its ratio to ``python -c pass``. Target: < 0.5 s for every entry point.
* dry run: wall seconds and peak memory (``ru_maxrss``) of ``studies/benchmark_digits.py --dry-run``, which
  reads no data but the files' headers. Target: < 5 s.
* cold start: wall seconds from launching ``studies/ablation_office31.py --smoke-test --tasks A->W --variants srdc
  --seeds 0 --epochs 2`` (temporary storage and SQLite tracking) to the first line of its trial's ``result.json``
  (the epoch-0 report, the untrained model's evaluation). Target: < 25 s. With it: the driver's peak resident
  memory until then (``VmHWM`` of its ``/proc/PID/status``; target: <= 500 MB), and the lines of its stdout and
  stderr that hold a worker's echo (``pid=``), a colour code (ESC ``[``) or a library's `` INFO `` (target: none).
* fixed cost per trial: the same smoke study with ``--seeds 0 1 2 --epochs 1 --max-concurrent 1``: the trials run
  one after the other, so the gap between one trial's last report and the next one's first report, less that
  report's own epoch (``wall_s_epoch``), is what a trial costs beyond its epochs (the worker's start and imports,
  loading the data, building the model, Tune's bookkeeping). The mean of the gaps. Target: < 1.5 s.

The two study figures are also given as a ratio to the CPU seconds of ``python -c "import torch"`` measured in the
same run (the least a trial's worker must import), so that a figure from a busy machine reads against its own
yardstick.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from srdc.trialfiles import RESULT_FILE

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SMOKE = ["--smoke-test", "--tasks", "A->W", "--variants", "srdc"]
POLL_S = 0.05
PARTS = ("help", "dryrun", "cold", "trials")
STUDY_TIMEOUT_S = 900
NOISE = {"worker echo (pid=)": "pid=", "colour code (ESC [)": "\x1b[", "INFO line": " INFO "}


def entry_points() -> dict[str, list[str]]:
    """Every entry point's ``--help`` command: the console scripts and each ``studies/*.py``."""
    commands = {name: [str(BIN / name), "--help"] for name in ("srdc-train", "srdc-data", "srdc-report")}
    for script in sorted((ROOT / "studies").glob("*.py")):
        commands[f"studies/{script.name}"] = [sys.executable, str(script), "--help"]
    return commands


def cpu_seconds(command: list[str]) -> float:
    """User + system CPU seconds of one run of ``command`` (its output discarded)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def median_cpu(command: list[str], repeat: int) -> float:
    return statistics.median(cpu_seconds(command) for _ in range(repeat))


def help_table(repeat: int) -> None:
    baseline = median_cpu([sys.executable, "-c", "pass"], repeat)
    print(f"--help CPU seconds (median of {repeat}); python -c pass: {baseline:.3f} s")
    print(f"{'entry point':<36} {'CPU s':>7} {'x python -c pass':>17}")
    for name, command in entry_points().items():
        seconds = median_cpu(command, repeat)
        print(f"{name:<36} {seconds:7.3f} {seconds / baseline:17.1f}")


def trial_reports(storage: Path) -> dict[Path, list[dict]]:
    """Every trial folder's reports so far (complete lines of its ``result.json``)."""
    reports = {}
    for result in storage.glob(f"*/*/{RESULT_FILE}"):
        lines = result.read_text().splitlines(keepends=True)
        reports[result.parent] = [json.loads(line) for line in lines if line.endswith("\n")]
    return reports


def peak_mb(pid: int) -> float | None:
    """The peak resident memory so far of process ``pid`` (``VmHWM``), in MB; ``None`` once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return next(int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmHWM:"))


@dataclass
class Watched:
    """A study run: launch-to-exit wall seconds, per trial folder the seconds after launch at which each of its
    reports was first seen, and the reports, the driver's peak memory before the first report, its console."""

    wall: float
    seen: dict[Path, list[float]]
    reports: dict[Path, list[dict]]
    peak_before_first_mb: float | None
    console: str


def watch_study(args: list[str], folder: Path, checkout: Path) -> Watched:
    """Run the smoke ablation of ``checkout`` with ``args``."""
    storage = folder / "ray"
    command = [sys.executable, str(checkout / "studies" / "ablation_office31.py"), *SMOKE, *args,
               "--storage-path", str(storage), "--tracking-uri", f"sqlite:///{folder}/mlflow.db"]
    seen: dict[Path, list[float]] = {}
    peak = None
    start = time.perf_counter()
    with open(folder / "stdout.txt", "w") as out, open(folder / "stderr.txt", "w") as err:
        process = subprocess.Popen(command, cwd=checkout, stdout=out, stderr=err,
                                   env={**os.environ, "PYTHONPATH": str(checkout)})
        while process.poll() is None and time.perf_counter() - start < STUDY_TIMEOUT_S:
            now = time.perf_counter() - start
            if not seen:
                peak = peak_mb(process.pid) or peak
            for trial, reports in trial_reports(storage).items():
                times = seen.setdefault(trial, [])
                times += [now] * (len(reports) - len(times))
            time.sleep(POLL_S)
        process.kill()
    wall = time.perf_counter() - start
    if process.returncode != 0:
        sys.exit(f"the study failed (exit {process.returncode}); see {folder}/stderr.txt")
    console = (folder / "stdout.txt").read_text() + (folder / "stderr.txt").read_text()
    return Watched(wall, {trial: times for trial, times in seen.items() if times}, trial_reports(storage), peak,
                   console)


def dry_run(checkout: Path) -> None:
    data_root = os.environ.get("SRDC_DATA_ROOT", str(ROOT.parent / "shared" / "data"))  # USPS and MNIST
    command = [sys.executable, str(checkout / "studies" / "benchmark_digits.py"), "--dry-run", "--data-root", data_root]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run(command, cwd=checkout, stdout=subprocess.DEVNULL, check=True,
                   env={**os.environ, "PYTHONPATH": str(checkout)})
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    shown = f"{peak / 1024:.0f} MB" if peak > before else f"at most {before / 1024:.0f} MB (an earlier child's)"
    print(f"dry run: studies/benchmark_digits.py --dry-run {wall:.1f} s, peak memory {shown}")


def cold_start(torch_s: float, checkout: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="startup-cold-") as folder:
        watched = watch_study(["--seeds", "0", "--epochs", "2"], Path(folder), checkout)
    first = min(times[0] for times in watched.seen.values())
    peak = "not seen" if watched.peak_before_first_mb is None else f"{watched.peak_before_first_mb:.0f} MB"
    print(f"cold start: launch -> first trial's first report {first:.1f} s "
          f"({first / torch_s:.1f} x import torch); launch -> exit {watched.wall:.1f} s; driver's peak memory "
          f"before the first report {peak}")
    lines = watched.console.splitlines()
    counts = ", ".join(f"{sum(text in line for line in lines)} {what}" for what, text in NOISE.items())
    print(f"  console: {len(lines)} lines; {counts}")


def fixed_cost(torch_s: float, checkout: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="startup-trials-") as folder:
        watched = watch_study(["--seeds", "0", "1", "2", "--epochs", "1", "--max-concurrent", "1"], Path(folder),
                              checkout)
    seen, reports = watched.seen, watched.reports
    order = sorted(seen, key=lambda trial: seen[trial][0])
    gaps = [seen[after][0] - seen[before][-1] - reports[after][0]["wall_s_epoch"]
            for before, after in itertools.pairwise(order)]
    cost = statistics.mean(gaps)
    print(f"fixed cost per trial: {cost:.2f} s ({cost / torch_s:.1f} x import torch; "
          f"{len(order)} trials one at a time, gaps {', '.join(f'{gap:.2f}' for gap in gaps)} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=PARTS, default=PARTS, help="these parts alone")
    parser.add_argument("--repeat", type=int, default=3, help="runs per --help figure (the median)")
    parser.add_argument("--checkout", type=Path, default=ROOT,
                        help="the checkout whose studies run (its folder first on PYTHONPATH; default: this one)")
    args = parser.parse_args()
    checkout = args.checkout.resolve()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(f"checkout: {checkout}")
    if "help" in args.only:
        help_table(args.repeat)
    if "dryrun" in args.only:
        dry_run(checkout)
    if not {"cold", "trials"} & set(args.only):
        return
    torch_s = median_cpu([sys.executable, "-c", "import torch"], args.repeat)
    print(f"python -c 'import torch': {torch_s:.2f} CPU s")
    if "cold" in args.only:
        cold_start(torch_s, checkout)
    if "trials" in args.only:
        fixed_cost(torch_s, checkout)


if __name__ == "__main__":
    main()
