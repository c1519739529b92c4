"""THE Ray Tune trainable of every study and search: a trial trains its runs in lockstep, epoch by epoch, and
reports and checkpoints after each.

A trial config is a flat dict of :class:`srdc.config.SRDCConfig` fields plus ``study``. A plain study's trial is
one run (``task``, ``seed`` among the fields). A search trial adds ``tasks`` (a list of ``{"task": ..., FIELD:
VALUE}``), ``seeds`` and ``search_objective`` (``labelfree`` or ``oracle``): it trains one run per task x seed
(the display keys ``task``/``seed`` then only name them), each with its own copy of the global random states,
so that runs stepped in lockstep draw exactly the numbers they would draw alone.

Each report holds, for epoch e, the mean over the runs of every number of their history rows and running
selections (for one run: the run's own row and selections), the wall time so far, and with a ``search_objective``
the search objectives (higher is better); with several runs also each run's own ``KEY.metric``. Epoch 0 is
the untrained model. A checkpoint holds each run's complete state in ``KEY/checkpoint.pt`` (its history included),
so that a retried or restored trial continues bit for bit from it; it comes with epoch 0, every
``checkpoint_every``-th epoch (a trial-config key, 1 unless the study's ``--checkpoint-every`` says otherwise) and the
last epoch, and a trial restarted from it trains the epochs after it again (exactly as before, so their reports
repeat themselves). The trial folder's ``history.jsonl``/``summary.json`` are the run's own history and summary for
one run, else the trial's reports and summary (the MLflow callback logs them); each is written once per epoch, and a
checkpoint's folder holds only the checkpoints, serialised once (Tune copies the folder into its storage). After the
last epoch, before its report, each run saves what its figures are drawn from into the trial folder's ``figures/``
(``record.pt``; with several runs ``KEY.record.pt``: :mod:`srdc.figures.trial`) and draws its figures beside it, in
the trial's process on the CPUs the trial holds (about a second for a smoke run, a few for a full one, most of it the
t-SNE), so that a study's end never waits for a drawing; the MLflow callback logs them as the run's artifacts. A run
whose drawing would take more than ``figures_budget`` of its training time (a smoke run's: half a second of training,
a second of drawing) keeps its record undrawn, and the last report counts it in ``figures_deferred`` (the study's
closing lines name the command that draws them). A
figure that cannot be drawn does not fail the trial, whose results stand: the traceback goes to
``figures/error.txt`` and the last report carries ``figures_failed`` (the console names the file). Each
report also names the Ray node it comes from (``node_id``) and every node the trial ran on so far (``node_ids``,
kept with the checkpoint, so a trial retried on another node after a node loss names both); the tracker tags its run
with them.
"""

from __future__ import annotations

import logging
import numbers
import re
import statistics
import sys
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from srdc.base import (
    NODE_KEY,
    NODES_KEY,
    SEARCH_SELECTIONS,
    RngState,
    capture_rng,
    restore_rng,
    set_torch_threads,
    threads_for_cpus,
)
from srdc.config import SRDCConfig
from srdc.data import load_task
from srdc.errors import NonFiniteLossError, SRDCInputError
from srdc.figures.trial import draw_within_budget, save_record
from srdc.runio import read_checkpoint, write_checkpoint
from srdc.selection import search_score, summarize_run
from srdc.trial_config import run_configs
from srdc.trialfiles import (
    CHECKPOINT,
    holds_every_run,
    nearest_complete_checkpoint,
    read_nodes,
    record_path,
    release_trial_files,
    write_diverged,
    write_figures_error,
    write_history,
    write_nodes,
    write_refused,
    write_summary,
)

if TYPE_CHECKING:
    import ray.tune

    from srdc.figures.recorder import FigureRecorder
    from srdc.trainer import Trainer

# a trial whose loss or metrics became NaN or infinite reports this key, and why in its folder (DIVERGED_FILE)
DIVERGED = "diverged"
# a trial that its own input refuses (SRDCInputError: a checkpoint that would run code, missing data...) reports
# this key, and why in its folder (REFUSED_FILE); like divergence, it is not retried
REFUSED = "refused"
# a trial whose figures could not be drawn reports this key with its last epoch, and why in its folder (FIGURES_ERROR)
FIGURES_FAILED = "figures_failed"
# a trial reports with its last epoch how many of its runs kept their figures' record undrawn (figures_budget)
FIGURES_DEFERRED = "figures_deferred"
# each run's own metrics in a several-run report (``KEY.acc_target``, ...)
RUN_METRICS = ("acc_target", "infomax", "acc_best_oracle", "acc_labelfree")

T = TypeVar("T")
EpochHook = Callable[["Trainer"], None]


def run_key(config: SRDCConfig) -> str:
    """A run's name in metric keys and checkpoint folders: ``digits-digits_photo.seed0`` (features: file stems)."""
    names = [re.sub(r"[^\w.\- ]", "_", Path(side).name.removesuffix(".npz")) for side in (config.source, config.target)]
    return f"{names[0]}-{names[1]}.seed{config.seed}"


@dataclass
class Member:
    """One run of a trial with its own copy of the global random states, and its figures' recorder (``None``: the
    config's ``figures`` is off)."""

    key: str
    trainer: Trainer
    rng: RngState
    recorder: FigureRecorder | None

    def do(self, action: Callable[[Trainer], T]) -> T:
        """``action(trainer)`` with this run's random states in place."""
        restore_rng(self.rng)
        try:
            return action(self.trainer)
        finally:
            self.rng = capture_rng()


class Lockstep:
    """A trial's runs, trained epoch by epoch in lockstep (one run for a plain study's trial)."""

    def __init__(self, trial_config: dict[str, Any]) -> None:
        # torch comes with the trainer: here, in the trial's process, not where the driver imports this module
        from srdc.figures.recorder import recorder_for
        from srdc.trainer import Trainer

        self.selection: str | None = trial_config.get("search_objective")  # the selection a search trial optimises
        if self.selection is not None and self.selection not in SEARCH_SELECTIONS:
            raise SRDCInputError(f"unknown objective {self.selection!r}; choose one of: {', '.join(SEARCH_SELECTIONS)}")
        self.members: list[Member] = []
        self._reports: list[dict[str, Any]] = []  # the reports of epochs 0, 1, ... made so far (several runs)
        data: dict[str, Any] = {}  # the seeds of one task share its data
        for config in run_configs(trial_config):
            if config.task_name not in data:
                data[config.task_name] = load_task(config)
            recorder = recorder_for(config)
            trainer = Trainer(config, data[config.task_name], observers=[recorder] if recorder else [])
            self.members.append(Member(run_key(config), trainer, capture_rng(), recorder))

    @property
    def epoch(self) -> int:
        return self.members[0].trainer.epoch

    @property
    def started(self) -> bool:
        """Whether epoch 0 (the untrained models) is evaluated."""
        return self.members[0].trainer.plan is not None

    @property
    def done(self) -> bool:
        return all(member.trainer.done for member in self.members)

    def initialise(self) -> None:
        for member in self.members:
            member.do(lambda trainer: trainer.initialise())

    def step(self) -> None:
        """Train every run one epoch."""
        for member in self.members:
            member.do(lambda trainer: trainer.step())

    def report(self, epoch: int) -> dict[str, Any]:
        """What the trial reports for ``epoch``; see the module docstring."""
        histories = [member.trainer.history[:epoch + 1] for member in self.members]
        configs = [member.trainer.config for member in self.members]
        values = [{**history[-1], **summarize_run(history, config)}
                  for history, config in zip(histories, configs, strict=True)]
        report = _mean_numbers(values)
        report["wall_s"] = sum(row["wall_s_epoch"] for history in histories for row in history)
        if self.selection is not None:
            objectives = {name: statistics.mean(search_score(history, name, config) for history, config
                                                in zip(histories, configs, strict=True))
                          for name in SEARCH_SELECTIONS}
            report["objective"] = objectives[self.selection]
            report.update({f"objective_{name}": value for name, value in objectives.items()})
        if len(self.members) > 1:
            for member, value in zip(self.members, values, strict=True):
                report.update({f"{member.key}.{key}": value[key] for key in RUN_METRICS})
        return report

    def history(self) -> list[dict[str, Any]]:
        """The trial folder's history: the run's own for one run, else the report of every epoch so far (each
        made once: an epoch's report depends on the epochs up to it only)."""
        if len(self.members) == 1:
            return self.members[0].trainer.history
        del self._reports[self.epoch + 1:]
        self._reports += [self.report(epoch) for epoch in range(len(self._reports), self.epoch + 1)]
        return self._reports

    def summary(self) -> dict[str, Any]:
        """The trial folder's summary: the run's own for one run, else the latest report, ``epochs`` and each
        run's summary."""
        if len(self.members) == 1:
            return self.members[0].trainer.summary()
        runs = {member.key: {k: v for k, v in member.trainer.summary().items() if k != "config"}
                for member in self.members}
        return {**self.report(self.epoch), "epochs": self.epoch, "runs": runs}

    def draw_figures(self, trial_dir: Path) -> dict[str, int]:
        """Save each run's figure record (with its config's ``figures``) into ``trial_dir/figures`` (``record.pt``,
        with several runs ``KEY.record.pt``) and draw its figures beside it within the run's ``figures_budget``
        (:func:`srdc.figures.trial.draw_within_budget`). Returns the last report's keys: :data:`FIGURES_DEFERRED`
        (the runs whose drawing was left to a backfill), or :data:`FIGURES_FAILED` when a figure could not be drawn
        (the traceback in ``figures/error.txt``: the results stand, the figures are missing)."""
        several = len(self.members) > 1
        deferred = 0
        for member in self.members:
            if member.recorder is None:
                continue
            history = member.trainer.history
            record = member.recorder.trial_record(history, member.trainer.task.source)
            path = record_path(trial_dir, f"{member.key}." if several else "")
            save_record(record, path)
            training_s = sum(row.get("wall_s_epoch", 0.0) for row in history)
            try:
                deferred += not draw_within_budget(record, path, training_s, member.trainer.config.figures_budget)
            except Exception:  # a defect of the drawing: reported by the trial's last report and the console
                write_figures_error(trial_dir, traceback.format_exc())
                logging.getLogger(__name__).exception("the figures of %s could not be drawn", member.key)
                return {FIGURES_FAILED: 1}
        return {FIGURES_DEFERRED: deferred} if deferred else {}

    def save(self, folder: Path) -> None:
        """Every run's complete state into ``folder/KEY/checkpoint.pt``."""
        for member in self.members:
            out = folder / member.key
            out.mkdir(parents=True)
            member.do(lambda trainer, into=out: write_checkpoint(into, trainer.state_dict()))

    def load(self, folder: Path) -> None:
        """Continue every run from ``folder`` (written by :meth:`save`)."""
        for member in self.members:
            state = read_checkpoint(folder / member.key)
            member.do(lambda trainer, saved=state: trainer.load_state_dict(saved))


def _mean_numbers(values: list[dict[str, Any]]) -> dict[str, Any]:
    """The first dict's keys: numbers averaged over every dict that has them, other values from the first."""
    first = values[0]
    mean: dict[str, Any] = {}
    for key, value in first.items():
        if key == "config":
            continue
        numbers_ = [v[key] for v in values if key in v]
        if _is_number(value) and all(_is_number(v) for v in numbers_):
            mean[key] = numbers_[0] if len(numbers_) == 1 else statistics.mean(numbers_)
        else:
            mean[key] = value
    return mean


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def usable_checkpoint(checkpoint: ray.tune.Checkpoint | None, keys: list[str]) -> ray.tune.Checkpoint | None:
    """The checkpoint a restored trial continues from: Tune's, unless it lacks a run's file; then the trial's
    nearest complete checkpoint, newer ones first (``checkpoint`` itself when there is none, whose load then says
    what is missing).

    After a worker node was lost, Ray 2.60 retried a trial for good from a checkpoint folder in the storage that
    held no ``checkpoint.pt`` (seen once in the multi-node test). Every complete checkpoint of a trial is its exact
    state at that epoch, so continuing from another one repeats or skips only reports that its history holds."""
    import ray.tune

    if checkpoint is None or holds_every_run(checkpoint.filesystem, checkpoint.path, keys):
        return checkpoint
    other = nearest_complete_checkpoint(checkpoint.filesystem, checkpoint.path, keys)
    if other is None:
        return checkpoint
    print(f"warning: Tune's checkpoint {checkpoint.path} lacks a run's {CHECKPOINT}; continuing from "
          f"{other}, the trial's nearest complete checkpoint", file=sys.stderr)
    folder = checkpoint.path.rsplit("/", 1)[0]
    return ray.tune.Checkpoint(f"{folder}/{other}", filesystem=checkpoint.filesystem)


def with_this_node(nodes: list[str]) -> list[str]:
    """``nodes`` and then this process's Ray node, unless it is the last of them already."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    return nodes if nodes[-1:] == [node] else [*nodes, node]


def placement(nodes: list[str]) -> dict[str, str]:
    """What a report says of where the trial ran: this node, and every node so far."""
    return {NODE_KEY: nodes[-1], NODES_KEY: ",".join(nodes)}


def trial_threads() -> str:
    """Set torch's threads to the trial's CPUs (its Tune resources, whatever ``OMP_NUM_THREADS`` the worker inherited:
    Ray sets it from the CPUs only where it is unset); returns the line that says so."""
    import ray

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    return set_torch_threads(threads_for_cpus(cpus), "the trial's CPUs") if cpus else set_torch_threads()


def report_epoch(runs: Lockstep, trial_dir: Path, nodes: list[str], checkpoint: bool = True) -> None:
    """Write the trial folder's history and summary (after the last epoch, the runs' figures next), then report the
    latest epoch, with ``checkpoint`` a checkpoint of every run (and of the ``nodes`` the trial ran on)."""
    import ray.tune

    write_history(trial_dir, runs.history())
    write_summary(trial_dir, runs.summary())
    report = {**runs.report(runs.epoch), **placement(nodes)}
    # the figures before the last report, whose checkpoint makes Tune sync the trial folder to the storage
    if runs.done:
        report.update(runs.draw_figures(trial_dir))
    if not checkpoint:
        ray.tune.report(report)
        return
    with tempfile.TemporaryDirectory(prefix="srdc-checkpoint-") as folder:
        runs.save(Path(folder))
        write_nodes(Path(folder), nodes)
        ray.tune.report(report, checkpoint=ray.tune.Checkpoint.from_directory(folder))


def checkpoint_every(trial_config: dict[str, Any]) -> int:
    """Every how many epochs the trial checkpoints (its ``checkpoint_every`` key; 1 when it has none)."""
    every = trial_config.get("checkpoint_every", 1)
    if not isinstance(every, int) or isinstance(every, bool) or every < 1:
        raise SRDCInputError(f"checkpoint_every must be a whole number >= 1, got {every!r}")
    return every


def run_trial(trial_config: dict[str, Any], after_epoch: EpochHook | None = None) -> None:
    """Train (or continue from the trial's latest checkpoint) every run of the trial, reporting every epoch;
    ``after_epoch(trainer)`` follows each report (for tests that inject faults; the harness passes none). A trial
    that its input refuses (:class:`SRDCInputError`) ends at once, not retried (:func:`report_refusal`)."""
    logging.getLogger("ray.train").setLevel(logging.WARNING)  # not a line per checkpoint in the study's console
    print(trial_threads())
    try:
        _train_trial(trial_config, after_epoch)
    except SRDCInputError as error:
        report_refusal(Path.cwd(), error)


def _train_trial(trial_config: dict[str, Any], after_epoch: EpochHook | None) -> None:
    """:func:`run_trial`'s training; an :class:`SRDCInputError` (the trial's input) propagates."""
    import ray.tune

    every = checkpoint_every(trial_config)
    runs = Lockstep(trial_config)
    checkpoint = usable_checkpoint(ray.tune.get_checkpoint(), [member.key for member in runs.members])
    nodes: list[str] = []
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            runs.load(Path(folder))
            nodes = read_nodes(Path(folder))
    nodes = with_this_node(nodes)
    # the trial's working directory, which Tune syncs from any node to the trial's folder in the storage (a new
    # worker's get_trial_dir() is a folder on its own node that nothing syncs)
    trial_dir = Path.cwd()
    try:
        if not runs.started:
            runs.initialise()
            report_epoch(runs, trial_dir, nodes)
        elif runs.done:  # restored from its last epoch's checkpoint, newer than Tune's saved state: report it again
            report_epoch(runs, trial_dir, nodes)
        while not runs.done:
            runs.step()
            report_epoch(runs, trial_dir, nodes, checkpoint=runs.epoch % every == 0 or runs.done)
            if after_epoch is not None:
                after_epoch(runs.members[0].trainer)
    except NonFiniteLossError as error:
        report_divergence(runs, trial_dir, error, nodes)
        return
    release_trial_files(trial_dir)


def report_divergence(runs: Lockstep, trial_dir: Path, error: NonFiniteLossError, nodes: list[str]) -> None:
    """End a diverged trial: a retry from its last checkpoint would diverge the same way, so it is not retried.
    Its last report is repeated, marked ``diverged`` (its last finite epoch's checkpoint stays the latest), and
    the reason is written in its folder (:func:`srdc.trialfiles.write_diverged`)."""
    import ray.tune

    write_diverged(trial_dir, str(error))
    epoch = min(len(member.trainer.history) for member in runs.members) - 1
    ray.tune.report({**(runs.report(epoch) if epoch >= 0 else {}), **placement(nodes), DIVERGED: 1})


def report_refusal(trial_dir: Path, error: SRDCInputError) -> None:
    """End a trial that its own input refuses: a retry would be refused the same way, so it is not retried. It
    reports only the ``refused`` marker (its last checkpoint, if any, stays the latest), and the reason is written
    in its folder (:func:`srdc.trialfiles.write_refused`)."""
    import ray.tune

    write_refused(trial_dir, str(error))
    ray.tune.report({REFUSED: 1})


def train_srdc(trial_config: dict[str, Any]) -> None:
    """The Ray Tune function trainable of every study and search (``tune.with_resources(train_srdc, ...)``)."""
    run_trial(trial_config)
