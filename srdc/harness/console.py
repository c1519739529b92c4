"""The compact console of a study: one line per trial event and a summary line every 30 s (:class:`ConsoleProgress`,
a Tune callback); ``--verbose`` adds Tune's status table (:class:`srdc.harness.ray_compat.ProgressTable`) and the
INFO lines of Ray, MLflow and Optuna (:func:`library_level`), ``-vv`` the trials' own output (each trial's is in its
folder's :data:`srdc.trialfiles.TRIAL_LOG` at any verbosity)."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from ray import tune
from ray.tune.experiment import Trial

from srdc.harness.trainable import DIVERGED, FIGURES_FAILED, REFUSED
from srdc.trialfiles import DIVERGED_FILE, FIGURES_ERROR, REFUSED_FILE, TRIAL_LOG, TUNE_ERROR_FILE

SUMMARY_EVERY_S = 30.0  # the compact console's summary line
LIBRARY_INFO_FROM = 1  # the verbosity (-v) from which Ray's, MLflow's and Optuna's INFO lines show
ECHO_TRIALS_FROM = 2  # the verbosity (-vv) from which the trials' output is echoed on the driver's console
LIBRARY_LOGGERS = ("ray", "mlflow", "optuna")
# what a finished trial's line shows (each where the trial reported it)
FINAL_METRICS = ("acc_last", "acc_best_oracle", "acc_labelfree", "objective")


def elapsed(seconds: float) -> str:
    """``54s``, ``3m12s``, ``1h05m``."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def library_level(verbose: int) -> int:
    """The logging level of Ray, MLflow and Optuna at ``verbose``: their warnings and errors, with ``-v`` INFO too."""
    return logging.INFO if verbose >= LIBRARY_INFO_FROM else logging.WARNING


def quiet_libraries(verbose: int) -> None:
    """Set the loggers of Ray, MLflow and Optuna to :func:`library_level`; MLflow's also in the processes this one
    starts, and where MLflow is imported later (``MLFLOW_LOGGING_LEVEL``, unless set already)."""
    level = library_level(verbose)
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", logging.getLevelName(level))
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(level)


def _value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class ConsoleProgress(tune.Callback):
    """The compact console of a study (on stderr; its results go to stdout): one line per trial event -- started or
    continued from its checkpoint, finished with its accuracies (each named by its model selection), stopped early by
    the scheduler, diverged, retried, failed -- and every ``every_s`` seconds (and at the end) one line of counts
    out of the ``planned`` trials (or of those Tune has made, when more), elapsed time and the best label-free result
    so far (a search's: its objective). A trial is named by its id and the config fields in ``columns``."""

    def __init__(self, epochs: int, columns: list[str], max_failures: int, planned: int = 0,
                 every_s: float = SUMMARY_EVERY_S, out: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.epochs, self.columns, self.max_failures, self.every_s = epochs, columns, max_failures, every_s
        self.planned = planned
        self.out, self.clock = out, clock
        self.start = self.last_summary = clock()

    def say(self, text: str) -> None:
        print(text, file=self.out or sys.stderr, flush=True)

    def name(self, trial: Trial) -> str:
        shown = " ".join(f"{key}={_value(trial.config[key])}" for key in self.columns if key in trial.config)
        return f"trial {trial.trial_id} {shown}".rstrip()

    def setup(self, **info: Any) -> None:
        self.start = self.last_summary = self.clock()

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        resumed = trial.checkpoint is not None
        self.say(f"{self.name(trial)}: {'continues from its last checkpoint' if resumed else 'started'}")

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        last = trial.last_result or {}
        epoch = last.get("epoch", 0)
        if last.get(REFUSED):
            self.say(f"{self.name(trial)}: failed, refused by its input (not retried; why: "
                     f"{trial.path}/{REFUSED_FILE})")
            return
        if last.get(DIVERGED):
            self.say(f"{self.name(trial)}: diverged after epoch {epoch}/{self.epochs} (its loss or metrics became "
                     f"NaN or infinite; not retried; why: {trial.path}/{DIVERGED_FILE})")
            return
        ended = "finished" if epoch >= self.epochs else "stopped early by the scheduler at"
        figures = f"; its figures could not be drawn (why: {trial.path}/{FIGURES_ERROR})" \
            if last.get(FIGURES_FAILED) else ""
        self.say(f"{self.name(trial)}: {ended} epoch {epoch}/{self.epochs}: {final_metrics(last)}{figures}")

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        start = "its last checkpoint" if trial.checkpoint is not None else "the start (no checkpoint yet)"
        self.say(f"{self.name(trial)}: crashed; retry {trial.num_failures} of {self.max_failures} (--max-failures), "
                 f"from {start}")

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.say(f"{self.name(trial)}: failed, crashed {trial.num_failures} time(s) (--max-failures "
                 f"{self.max_failures}); its error: {trial.path}/{TUNE_ERROR_FILE}, its output: "
                 f"{trial.path}/{TRIAL_LOG}")

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        if self.clock() - self.last_summary >= self.every_s:
            self.say(self.summary(trials))

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self.say(self.summary(trials))

    def summary(self, trials: list[Trial]) -> str:
        """``12/60 trials done, 4 running, 0 failed, elapsed 3m12s, best so far: ...`` (done: finished, stopped
        early or diverged, out of the planned trials; the split is shown when not all finished; failed: crashed after
        its retries, or refused by its input)."""
        self.last_summary = self.clock()
        refused = sum(1 for trial in trials if (trial.last_result or {}).get(REFUSED))
        done = [trial for trial in trials if trial.status == Trial.TERMINATED
                and not (trial.last_result or {}).get(REFUSED)]
        diverged = sum(1 for trial in done if (trial.last_result or {}).get(DIVERGED))
        early = sum(1 for trial in done if not (trial.last_result or {}).get(DIVERGED)
                    and (trial.last_result or {}).get("epoch", 0) < self.epochs)
        split = f" ({len(done) - diverged - early} finished, {early} stopped early, {diverged} diverged)" \
            if early or diverged else ""
        running = sum(1 for trial in trials if trial.status == Trial.RUNNING)
        failed = sum(1 for trial in trials if trial.status == Trial.ERROR) + refused
        line = (f"{len(done)}/{max(self.planned, len(trials))} trials done{split}, {running} running, {failed} failed, "
                f"elapsed {elapsed(self.clock() - self.start)}")
        return line + best_so_far(done, self.name)


def final_metrics(last: dict[str, Any]) -> str:
    """A trial's last accuracies and objective, each under its own name (which model selection)."""
    return ", ".join(f"{key} {last[key]:.1f}" if key.startswith("acc") else f"{key} {last[key]:.4g}"
                     for key in FINAL_METRICS if isinstance(last.get(key), int | float))


def best_so_far(trials: list[Trial], name: Callable[[Trial], str]) -> str:
    """``, best so far: acc_labelfree 69.5 (trial ...)``: the finished trial with the highest objective (a search),
    else label-free accuracy; empty before any."""
    finished = [trial for trial in trials if not (trial.last_result or {}).get(DIVERGED)]
    for key in ("objective", "acc_labelfree"):
        scored = [trial for trial in finished if isinstance((trial.last_result or {}).get(key), int | float)]
        if scored:
            best = max(scored, key=lambda trial: trial.last_result[key])
            value = best.last_result[key]
            shown = f"{value:.1f}" if key.startswith("acc") else f"{value:.4g}"
            return f", best so far: {key} {shown} ({name(best)})"
    return ""
