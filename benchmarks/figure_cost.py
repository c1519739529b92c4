"""What a run's figures cost: one smoke-study trial trained with figures (the snapshots it keeps of each
selection's pick, and its record saved at the end) and without, alternately in this process, and the drawing of
its figures from that record timed apart (a study's trial draws them before its last report, ``srdc-train`` at the
run's end; the whole study's cost of them: ``benchmarks/study_wall.py``). Prints figures; asserts nothing. Target
(issue 10): the snapshots and the record add under 5% to a trial's training.

    python benchmarks/figure_cost.py                       # the smoke study's trial: embedded data, 2 epochs
    python benchmarks/figure_cost.py --epochs 6 --repeats 9
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from srdc.config import SRDCConfig
from srdc.figures.recorder import recorder_for
from srdc.figures.trial import load_record, save_record, write_trial_figures
from srdc.harness.declarations import SMOKE_CONFIG
from srdc.trainer import Trainer
from srdc.trialfiles import record_path


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="digits->digits_photo", help="an embedded task (the smoke study's)")
    parser.add_argument("--variant", default="srdc")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per trial (the smoke study's: 2)")
    parser.add_argument("--repeats", type=int, default=5, help="trials with and without figures, alternately")
    return parser.parse_args()


def trial_seconds(config: SRDCConfig, folder: Path) -> float:
    """A trial's path: build, the epoch-0 pass, training and, with figures, the record saved into ``folder``."""
    start = time.perf_counter()
    recorder = recorder_for(config)
    trainer = Trainer(config, progress=False, observers=[recorder] if recorder else [])
    trainer.fit()  # the epoch-0 pass first (Trainer.initialise)
    if recorder is not None:
        save_record(recorder.trial_record(trainer.history, trainer.task.source), record_path(folder))
    return time.perf_counter() - start


def drawing_seconds(folder: Path) -> tuple[float, int]:
    """Drawing every figure from the record in ``folder``: seconds, and the number of figures."""
    start = time.perf_counter()
    written = write_trial_figures(load_record(record_path(folder)), folder / "drawn")
    return time.perf_counter() - start, len(written)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    base = {**SMOKE_CONFIG, "dataset": "embedded", "task": args.task, "variant": args.variant, "epochs": args.epochs}
    times: dict[bool, list[float]] = {True: [], False: []}
    drawing: list[float] = []
    figures = 0
    with tempfile.TemporaryDirectory(prefix="figure-cost-") as scratch:
        trial_seconds(SRDCConfig(**base, figures=True), Path(scratch) / "warm-up")  # imports, data, first calls
        for repeat in range(args.repeats):
            for with_figures in (False, True):
                folder = Path(scratch) / f"{repeat}-{with_figures}"
                times[with_figures].append(trial_seconds(SRDCConfig(**base, figures=with_figures), folder))
                print(f"repeat {repeat + 1}/{args.repeats}, figures {with_figures}: "
                      f"{times[with_figures][-1]:.2f} s", flush=True)
            seconds, figures = drawing_seconds(folder)
            drawing.append(seconds)
    plain, kept = statistics.median(times[False]), statistics.median(times[True])
    drawn = statistics.median(drawing)
    print(f"\ntrial: embedded {args.task} {args.variant}, {args.epochs} epochs, {SMOKE_CONFIG}, one thread; "
          f"medians of {args.repeats}")
    print(f"trial without figures                        {plain:7.2f} s")
    print(f"trial with figures (snapshots + record)      {kept:7.2f} s   ratio {kept / plain:.3f}")
    print(f"drawing its {figures} figures from the record      {drawn:7.2f} s   "
          f"({drawn / plain:.1%} of the trial; the first drawing of a process also imports matplotlib and "
          "scikit-learn)")


if __name__ == "__main__":
    main()
