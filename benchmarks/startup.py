"""What starting costs: ``--help`` of every entry point, launch to the first trial's first report, and the fixed
cost of each further trial. Prints figures, each beside a reference measured in the same run; asserts nothing.

    python benchmarks/startup.py                  # all three parts (a few minutes on 2 busy cores)
    python benchmarks/startup.py --only help      # the --help part alone (seconds)

Figures:

* ``--help``: CPU seconds (user + system, ``getrusage`` of the child) of ``ENTRY --help``, the median of
  ``--repeat`` runs, and its ratio to ``python -c pass``. Target: < 0.5 s for every entry point.
* cold start: wall seconds from launching ``studies/ablation_office31.py --smoke-test --tasks A->W --variants srdc
  --seeds 0 --epochs 2`` (temporary storage and SQLite tracking) to the first line of its trial's ``result.json``
  (the epoch-0 report, the untrained model's evaluation). Target: < 25 s.
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
from pathlib import Path

from srdc.trialfiles import RESULT_FILE

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SMOKE = ["--smoke-test", "--tasks", "A->W", "--variants", "srdc"]
POLL_S = 0.05
STUDY_TIMEOUT_S = 900


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


def watch_study(args: list[str], folder: Path) -> tuple[float, dict[Path, list[float]], dict[Path, list[dict]]]:
    """Run the smoke ablation with ``args``; the launch-to-exit wall seconds, and per trial folder the seconds
    after launch at which each of its reports was first seen, and the reports."""
    storage = folder / "ray"
    command = [sys.executable, str(ROOT / "studies" / "ablation_office31.py"), *SMOKE, *args,
               "--storage-path", str(storage), "--tracking-uri", f"sqlite:///{folder}/mlflow.db"]
    seen: dict[Path, list[float]] = {}
    start = time.perf_counter()
    with open(folder / "output.txt", "w") as output:
        process = subprocess.Popen(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)
        while process.poll() is None and time.perf_counter() - start < STUDY_TIMEOUT_S:
            now = time.perf_counter() - start
            for trial, reports in trial_reports(storage).items():
                times = seen.setdefault(trial, [])
                times += [now] * (len(reports) - len(times))
            time.sleep(POLL_S)
        process.kill()
    wall = time.perf_counter() - start
    seen = {trial: times for trial, times in seen.items() if times}
    if process.returncode != 0:
        sys.exit(f"the study failed (exit {process.returncode}); see {folder / 'output.txt'}")
    return wall, seen, trial_reports(storage)


def cold_start(torch_s: float) -> None:
    with tempfile.TemporaryDirectory(prefix="startup-cold-") as folder:
        wall, seen, _ = watch_study(["--seeds", "0", "--epochs", "2"], Path(folder))
    first = min(times[0] for times in seen.values())
    print(f"cold start: launch -> first trial's first report {first:.1f} s "
          f"({first / torch_s:.1f} x import torch); launch -> exit {wall:.1f} s")


def fixed_cost(torch_s: float) -> None:
    with tempfile.TemporaryDirectory(prefix="startup-trials-") as folder:
        _, seen, reports = watch_study(["--seeds", "0", "1", "2", "--epochs", "1", "--max-concurrent", "1"],
                                       Path(folder))
    order = sorted(seen, key=lambda trial: seen[trial][0])
    gaps = [seen[after][0] - seen[before][-1] - reports[after][0]["wall_s_epoch"]
            for before, after in itertools.pairwise(order)]
    cost = statistics.mean(gaps)
    print(f"fixed cost per trial: {cost:.2f} s ({cost / torch_s:.1f} x import torch; "
          f"{len(order)} trials one at a time, gaps {', '.join(f'{gap:.2f}' for gap in gaps)} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("help", "cold", "trials"), default=None, help="one part alone")
    parser.add_argument("--repeat", type=int, default=3, help="runs per --help figure (the median)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.only in (None, "help"):
        help_table(args.repeat)
    if args.only == "help":
        return
    torch_s = median_cpu([sys.executable, "-c", "import torch"], args.repeat)
    print(f"python -c 'import torch': {torch_s:.2f} CPU s")
    if args.only in (None, "cold"):
        cold_start(torch_s)
    if args.only in (None, "trials"):
        fixed_cost(torch_s)


if __name__ == "__main__":
    main()
