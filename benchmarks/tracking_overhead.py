"""What tracking costs a study per trial: the same Ray Tune study run without tracking, with our MLflow logger
sending from the Tune loop (every event sent before the loop goes on: the logger before the sending thread), with
our logger as the harness uses it (events queued, sent by a background thread), and with Ray's stock
``MLflowLoggerCallback``; all in one run, against the same kind of store. Prints figures; asserts nothing.

    python benchmarks/tracking_overhead.py                       # 16 trials x 10 epochs, embedded SQLite stores
    python benchmarks/tracking_overhead.py --trials 40 --tracking-uri http://127.0.0.1:5000

A trial is a stand-in for the trainable: it writes ``history.jsonl``/``summary.json`` as ours does and reports
``--epochs`` results of 25 metrics, ``--epoch-s`` apart. Per-trial cost = (wall time - wall time without tracking)
/ trials; the driver's CPU seconds are those of this process (Tune's loop and the logger's thread).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
from ray import tune

from srdc.harness.tuner import TuneTracking
from srdc.tracking import StudyLogger
from srdc.trialfiles import HISTORY, SUMMARY

METRICS = 25


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--epoch-s", type=float, default=0.1, help="seconds between a trial's reports")
    parser.add_argument("--cpus", type=int, default=2, help="trials at once")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each setting (the fastest is shown)")
    parser.add_argument("--tracking-uri", default=None,
                        help="one store for every setting (default: a new SQLite file per run)")
    return parser.parse_args()


def stand_in_trial(config: dict[str, Any]) -> None:
    """Reports like the trainable: one result of ``METRICS`` numbers per epoch, its files rewritten each time."""
    history = []
    for epoch in range(config["epochs"] + 1):
        time.sleep(config["epoch_s"])
        row = {"epoch": epoch, **{f"metric_{i}": epoch * 0.5 + i + config["seed"] for i in range(METRICS)}}
        history.append(row)
        Path(HISTORY).write_text("".join(json.dumps(r) + "\n" for r in history))
        Path(SUMMARY).write_text(json.dumps({"epochs": epoch, "acc_last": row["metric_0"]}))
        tune.report(row)


class InlineLogger(StudyLogger):
    """Our logger, every event sent before the Tune loop goes on (as before the sending thread)."""

    def _queue(self, event: Callable[[], None]) -> None:
        super()._queue(event)
        self.flush()


def ours(logger_class: type[StudyLogger]) -> Callable[[str, str], list[tune.Callback]]:
    def callbacks(uri: str, experiment: str) -> list[tune.Callback]:
        return [TuneTracking(logger_class("bench", experiment, uri, {"seeds": 1}))]
    return callbacks


def ray_stock(uri: str, experiment: str) -> list[tune.Callback]:
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    return [MLflowLoggerCallback(tracking_uri=uri, experiment_name=experiment, save_artifact=True)]


SETTINGS: dict[str, Callable[[str, str], list[tune.Callback]]] = {
    "no tracking": lambda uri, experiment: [],
    "ours, sent in the Tune loop": ours(InlineLogger),
    "ours, queued (the harness)": ours(StudyLogger),
    "Ray's MLflowLoggerCallback": ray_stock,
}


def run_once(args: argparse.Namespace, name: str, work: Path, run: int) -> tuple[float, float]:
    """Wall and driver CPU seconds of one study with the setting ``name``."""
    uri = args.tracking_uri or f"sqlite:///{work / f'mlflow-{run}.db'}"
    experiment = f"tracking-overhead-{run}"
    space = {"seed": tune.grid_search(list(range(args.trials))), "epochs": args.epochs, "epoch_s": args.epoch_s}
    tuner = tune.Tuner(
        tune.with_resources(stand_in_trial, {"cpu": 1}),
        param_space=space,
        tune_config=tune.TuneConfig(max_concurrent_trials=args.cpus),
        run_config=tune.RunConfig(name=experiment, storage_path=str(work / "ray"), verbose=0,
                                  callbacks=SETTINGS[name](uri, experiment)),
    )
    wall, cpu = time.perf_counter(), time.process_time()
    tuner.fit()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    args = parse_args()
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    timings: dict[str, list[tuple[float, float]]] = {name: [] for name in SETTINGS}
    with tempfile.TemporaryDirectory(prefix="tracking-overhead-") as folder:
        run = 0
        for repeat in range(args.repeats):
            for name in SETTINGS:  # interleaved, so that a slower period of the machine hits every setting
                run += 1
                timings[name].append(run_once(args, name, Path(folder), run))
                print(f"repeat {repeat + 1}/{args.repeats} {name}: {timings[name][-1][0]:.1f} s", flush=True)
    ray.shutdown()
    best = {name: min(values) for name, values in timings.items()}
    bare_wall, bare_cpu = best["no tracking"]
    print(f"\n{args.trials} trials x {args.epochs + 1} reports of {METRICS} metrics, {args.cpus} at once, "
          f"store: {args.tracking_uri or 'a new SQLite file per run'}; fastest of {args.repeats}")
    print(f"{'setting':32} {'wall s':>8} {'per trial s':>12} {'x no tracking':>14} {'driver CPU s':>13}")
    for name, (wall, cpu) in best.items():
        print(f"{name:32} {wall:8.1f} {(wall - bare_wall) / args.trials:12.2f} {wall / bare_wall:14.3f} "
              f"{cpu:13.1f}")


if __name__ == "__main__":
    main()
