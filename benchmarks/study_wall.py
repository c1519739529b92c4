"""Where a study's wall time goes: the same study run with its figures and without (``--set figures=false``),
alternately, each in a fresh process with its own storage and SQLite tracking. Prints figures; asserts nothing.

    python benchmarks/study_wall.py                                  # the A->W smoke ablation, 1 seed (~2 min)
    python benchmarks/study_wall.py --tasks all                      # the full 60-trial smoke ablation
    python benchmarks/study_wall.py --epochs 6                       # more middle epochs for the per-epoch ratio
    python benchmarks/study_wall.py --study benchmark_digits --data-root ../shared/data --tasks 'usps->mnist' \
        --variants srdc --epochs 4                                    # real digits data: minutes-long epochs

Figures, for each of the two (medians over ``--repeats``):

* wall: launch to exit, and the ratio with figures / without. Target (issue 20): <= 1.3 for the full smoke study.
* tail: the last trial report (the newest ``result.json`` write) to the study's exit: tables, study figures, the
  MLflow end. Target: <= 30 s.
* per epoch: Tune's time between a trial's reports (``time_this_iter_s``) over the epoch's own compute
  (``wall_s_epoch``, which includes the figure snapshot, ``time_observers_s``), for the epochs between the first and
  the last (the first holds the trial's start, the last its figures). Target: <= 1.02.
* stdout: lines holding ``pid=``, an ANSI escape or `` INFO `` (Ray's worker echo, colours, library logging).
  Target: none.
* figures: the trial runs that drew their figures and those that kept their record undrawn, over their
  ``figures_budget`` (``--figures-budget``: the study's default unless given; ``1e9`` draws every run's).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from srdc.figures.trial import figure_prefix
from srdc.trialfiles import RECORD_FILES, RESULT_FILE

ROOT = Path(__file__).resolve().parents[1]
NOISE = ("pid=", "\x1b[", " INFO ")


@dataclass(frozen=True)
class StudyRun:
    """One run of the smoke study: its wall time, its tail, its per-epoch ratios and its noisy stdout lines."""

    wall_s: float
    tail_s: float
    epoch_ratios: list[float]
    noisy_lines: list[str]
    drawn: int
    deferred: int


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="ablation_office31", help="a study script of studies/")
    parser.add_argument("--data-root", default=None,
                        help="run the study on its real data from here (default: its --smoke-test on embedded data)")
    parser.add_argument("--tasks", nargs="+", default=["A->W"], help="the study's tasks, or 'all' (its whole grid)")
    parser.add_argument("--variants", nargs="+", default=["all"], help="the study's variants, or 'all'")
    parser.add_argument("--seeds", nargs="+", default=["0"], help="seeds, or 'all' (the study's)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per trial (default: the smoke study's 2)")
    parser.add_argument("--repeats", type=int, default=1, help="runs with and without figures, alternately")
    parser.add_argument("--figures-budget", type=float, default=None,
                        help="--set figures_budget= for the runs with figures (default: the study's; 1e9: draw all)")
    return parser.parse_args()


def run_study(args: argparse.Namespace, figures: bool, folder: Path) -> StudyRun:
    """Run the study once in ``folder``; what it cost."""
    command = [sys.executable, str(ROOT / "studies" / f"{args.study}.py"), "--storage-path", str(folder / "ray"),
               "--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}", "--set", f"figures={str(figures).lower()}"]
    command += ["--smoke-test"] if args.data_root is None else ["--data-root", str(Path(args.data_root).resolve())]
    command += [] if args.variants == ["all"] else ["--variants", *args.variants]
    command += [] if args.tasks == ["all"] else ["--tasks", *args.tasks]
    command += [] if args.seeds == ["all"] else ["--seeds", *args.seeds]
    command += [] if args.epochs is None else ["--epochs", str(args.epochs)]
    command += [] if args.figures_budget is None else ["--set", f"figures_budget={args.figures_budget}"]
    start = time.time()
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True,
                          env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    end = time.time()
    if done.returncode != 0:
        raise SystemExit(f"the study failed ({done.returncode}):\n{done.stderr[-3000:]}")
    results = list((folder / "ray").glob(f"*/*/{RESULT_FILE}"))
    last_report = max(path.stat().st_mtime for path in results)
    ratios = [ratio for path in results for ratio in middle_epoch_ratios(path)]
    noisy = [line for line in done.stdout.splitlines() if any(mark in line for mark in NOISE)]
    records = list((folder / "ray").glob(f"*/*/{RECORD_FILES}"))
    drawn = sum(path.with_name(f"{figure_prefix(path)}curves.png").is_file() for path in records)
    return StudyRun(end - start, end - last_report, ratios, noisy, drawn, len(records) - drawn)


def middle_epoch_ratios(result_file: Path) -> list[float]:
    """Tune's time between reports over the epoch's own compute, for each epoch but the first and the last."""
    rows = [json.loads(line) for line in result_file.read_text().splitlines() if line.strip()]
    epochs = [row for row in rows if "wall_s_epoch" in row]
    return [row["time_this_iter_s"] / row["wall_s_epoch"] for row in epochs[1:-1] if row["wall_s_epoch"] > 0]


def main() -> None:
    args = parse_args()
    runs: dict[bool, list[StudyRun]] = {True: [], False: []}
    for repeat in range(args.repeats):
        for figures in (True, False):
            with tempfile.TemporaryDirectory(prefix="srdc-study-wall-") as folder:
                run = run_study(args, figures, Path(folder))
            runs[figures].append(run)
            print(f"repeat {repeat + 1}/{args.repeats}, figures {figures}: wall {run.wall_s:.1f} s, tail "
                  f"{run.tail_s:.1f} s, figures drawn by {run.drawn} run(s), deferred by {run.deferred}", flush=True)
    data = "its smoke test" if args.data_root is None else f"data from {args.data_root}"
    print(f"\n{args.study} on {data}, tasks {' '.join(args.tasks)}, variants {' '.join(args.variants)}, seeds "
          f"{' '.join(args.seeds)}, epochs {args.epochs or 'the study default'}; medians of {args.repeats}")
    walls = {figures: statistics.median(run.wall_s for run in done) for figures, done in runs.items()}
    for figures, done in runs.items():
        ratios = [ratio for run in done for ratio in run.epoch_ratios]
        per_epoch = f"{statistics.median(ratios):.3f} (max {max(ratios):.3f}, {len(ratios)} epochs)" if ratios \
            else "n/a (no epoch between the first and the last: use --epochs 3 or more)"
        noisy = sum(len(run.noisy_lines) for run in done)
        print(f"{'with' if figures else 'without'} figures: wall {walls[figures]:.1f} s, last report -> exit "
              f"{statistics.median(run.tail_s for run in done):.1f} s, per-epoch wall / compute {per_epoch}, "
              f"noisy stdout lines {noisy}")
        for line in {line for run in done for line in run.noisy_lines}:
            print(f"    {line!r}")
    print(f"wall with figures / without: {walls[True] / walls[False]:.3f} (target <= 1.3 for the full smoke study)")


if __name__ == "__main__":
    main()
