""":class:`StudyLogger`: mirrors a running study into a tracker, one parent run per study, one child per trial.

It runs in the Tune driver, called by the harness's Tune callback (this module imports no Ray). It logs each
trial's per-epoch results (``step=epoch``), tags its run with the Ray node(s) it ran on (``srdc.node``,
``srdc.nodes``) and at the trial's end logs its summary metrics, its ``summary.json``/``history.jsonl``, its figures
(``figures/*.png``, drawn by the trial itself before its last report: :mod:`srdc.harness.trainable`) and the run
status. Runs are found again by their tags, so a trial retry or a ``Tuner.restore`` re-attaches to the existing
runs and never logs an epoch twice. The logger draws nothing.

Sending is off the Tune loop: the driver's calls only queue the event (a bounded queue: a store slower than the
study slows the driver down instead of filling its memory); one background thread takes every queued event, then
sends what is pending for all trials in one pass, so epochs that arrived together go out in one batch per run.
:meth:`StudyLogger.flush` waits until everything queued has been handled; :meth:`StudyLogger.sweep_ended`
drains the queue and stops the thread. An error of the logger itself (not of the store) stops the sending and is
raised again in the driver at its next call, never swallowed.

The tracking store is optional: when it cannot be reached the logger warns once, keeps the unsent epochs and
retries later; the study never stops for it. Tune's results on disk stay the source of truth, and
:func:`srdc.tracking.sync.sync_study` backfills the store from them.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from srdc.base import TrialStatus
from srdc.tracking.base import (
    EpochRow,
    Tracker,
    TrackingRefused,
    TrackingUnavailable,
    check_name,
    epoch_row,
    limit_http_retries,
    node_tags,
)
from srdc.tracking.mlflow_tracker import open_tracker
from srdc.tracking.trial_end import Folder, finish_trial

logger = logging.getLogger(__name__)

# what StudyLogger pickles: its settings (Tune pickles its callbacks with the Tuner)
SETTINGS = ("study", "experiment", "tracking_uri", "study_params", "retry_interval_s", "tracker_factory")
# events the driver may queue ahead of the sending thread before it waits for it
QUEUE_SIZE = 10_000
# the event that stops the sending thread
STOP = None

TrackerFactory = Callable[[str, str], Tracker]


@dataclass
class _TrialLog:
    """What the logger still has to send for one trial."""

    trial_id: str
    config: dict[str, Any]
    folders: list[Folder]
    run_id: str | None = None
    logged: set[int] = field(default_factory=set)
    pending: list[EpochRow] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    tagged: dict[str, str] = field(default_factory=dict)
    final_status: TrialStatus | None = None
    finalized: bool = False
    abandoned: bool = False

    def has_work(self) -> bool:
        if self.abandoned:
            return False
        return (self.run_id is None or bool(self.pending) or self.tags != self.tagged
                or (self.final_status is not None and not self.finalized))


class StudyLogger:
    """Mirrors a study into the tracker ``tracker_factory(tracking_uri, experiment)``; see the module docstring.

    ``study_params`` become the parent run's params; include ``seeds`` (how many seeds are planned, or the list
    of them) so that reports can show cells with fewer finished seeds. ``retry_interval_s``: how long to wait
    before talking to an unreachable store again. The tracker is made on first use; pickling keeps the
    settings only.
    """

    def __init__(self, study: str, experiment: str, tracking_uri: str, study_params: dict[str, Any],
                 retry_interval_s: float = 60.0, tracker_factory: TrackerFactory = open_tracker) -> None:
        self.study = check_name(study)
        self.experiment = experiment
        self.tracking_uri = tracking_uri
        self.study_params = dict(study_params)
        self.retry_interval_s = retry_interval_s
        self.tracker_factory = tracker_factory
        self._reset()

    def _reset(self) -> None:
        self._tracker: Tracker | None = None
        self._parent_id: str | None = None
        self._trials: dict[str, _TrialLog] = {}
        self._retry_at = 0.0
        self._offline = False
        self._disabled = False
        self._events: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=QUEUE_SIZE)
        self._sender: threading.Thread | None = None
        self._failure: BaseException | None = None

    def __getstate__(self) -> dict[str, Any]:
        """The settings only; the state is rebuilt on use."""
        return {key: self.__dict__[key] for key in SETTINGS}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    # -- what the study's driver calls --------------------------------------------------------------------------
    def setup(self) -> None:
        """Before the first trial: fail fast on HTTP errors, attach the study's parent run (in the driver, once)."""
        limit_http_retries()
        self._flush()

    def trial_started(self, trial_id: str, config: dict[str, Any], folders: list[Folder]) -> None:
        """A trial starts, or starts again (retry, restore): its run is attached (re-opened)."""
        self._queue(partial(self._on_started, trial_id, dict(config), list(folders)))

    def trial_result(self, trial_id: str, config: dict[str, Any], folders: list[Folder],
                     result: dict[str, Any]) -> None:
        """A trial reported ``result``: logged when it is a per-epoch result (it has an ``epoch`` key); the node it
        names becomes a tag of the trial's run."""
        self._queue(partial(self._on_result, trial_id, dict(config), list(folders), epoch_row(result),
                            node_tags(result)))

    def trial_ended(self, trial_id: str, config: dict[str, Any], folders: list[Folder],
                    status: TrialStatus) -> None:
        """A trial ended with ``status`` (FINISHED or FAILED): summary, files and status go to its run."""
        if status not in (TrialStatus.FINISHED, TrialStatus.FAILED):
            raise ValueError(f"a trial ends FINISHED or FAILED, not {status}")
        self._queue(partial(self._on_ended, trial_id, dict(config), list(folders), status))

    def flush(self) -> None:
        """Wait until every event queued so far has been handled (sent, or kept for a retry when the store is
        unreachable)."""
        self._raise_failure()
        self._events.join()
        self._raise_failure()

    def sweep_ended(self) -> None:
        """The sweep ended (Tune's ``on_experiment_end``): send what is left, end the parent run, and name what
        could not be sent."""
        if self._sender is not None:
            self._events.put(STOP)
            self._sender.join()
            self._sender = None
        self._raise_failure()
        self._retry_at = 0.0
        self._flush()
        if self._parent_id is not None and not self._offline:
            self._try(self._finish_parent, "the study's parent run")
        unsent = [state.trial_id for state in self._trials.values() if state.has_work() or state.abandoned]
        if unsent:
            logger.warning("%d trial(s) of study %s are not fully in the tracking store %s; backfill them with "
                           "`srdc-report --study %s --sync --storage-path DIR`", len(unsent), self.study,
                           self.tracking_uri, self.study)

    # -- the sending thread ---------------------------------------------------------------------------------
    def _queue(self, event: Callable[[], None]) -> None:
        self._raise_failure()
        if self._sender is None:
            self._sender = threading.Thread(target=self._send_loop, name=f"srdc-tracking-{self.study}", daemon=True)
            self._sender.start()
        self._events.put(event)

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise RuntimeError(f"tracking study {self.study} failed; Tune's results are complete, backfill the "
                               f"store with `srdc-report --study {self.study} --sync`") from self._failure

    def _send_loop(self) -> None:
        """Handle every queued event, then send what is pending in one pass; until :data:`STOP`. While the store
        is unreachable, wake up again when its retry is due."""
        stop = False
        while not stop:
            timeout = max(self._retry_at - time.monotonic(), 0.0) + 0.01 if self._offline else None
            try:
                events = [self._events.get(timeout=timeout)]
            except queue.Empty:
                events = []
            while True:
                try:
                    events.append(self._events.get_nowait())
                except queue.Empty:
                    break
            try:
                for event in events:
                    if event is STOP:
                        stop = True
                    elif self._failure is None:
                        event()
                if self._failure is None:
                    self._flush()
            except BaseException as error:  # a defect of the logger: the driver raises it at its next call
                self._failure = error
            finally:
                for _ in events:
                    self._events.task_done()

    def _on_started(self, trial_id: str, config: dict[str, Any], folders: list[Folder]) -> None:
        state = self._trial_log(trial_id, config, folders)
        if state.final_status is not None:  # restarted after its end: re-attach (and so re-open) its run
            state.run_id, state.final_status, state.finalized = None, None, False

    def _on_result(self, trial_id: str, config: dict[str, Any], folders: list[Folder], row: EpochRow | None,
                   tags: dict[str, str]) -> None:
        state = self._trial_log(trial_id, config, folders)
        if row is not None:
            state.pending.append(row)
        state.tags.update(tags)

    def _on_ended(self, trial_id: str, config: dict[str, Any], folders: list[Folder], status: TrialStatus) -> None:
        self._trial_log(trial_id, config, folders).final_status = status

    # -- sending --------------------------------------------------------------------------------------------
    def _trial_log(self, trial_id: str, config: dict[str, Any], folders: list[Folder]) -> _TrialLog:
        if trial_id not in self._trials:
            self._trials[trial_id] = _TrialLog(trial_id, dict(config), list(folders))
        return self._trials[trial_id]

    def _flush(self) -> None:
        """Send what is pending, unless the store was unreachable less than ``retry_interval_s`` ago."""
        if self._disabled or time.monotonic() < self._retry_at:
            return
        if self._parent_id is None:
            outcome = self._try(self._attach_parent, "the study's parent run")
            self._disabled = outcome == "refused"
            if outcome != "ok":
                return
        for state in self._trials.values():
            if not state.has_work():
                continue
            outcome = self._try(partial(self._send_trial, state), f"trial {state.trial_id}")
            state.abandoned = outcome == "refused"
            if outcome == "unreachable":
                return

    def _try(self, action: Callable[[], None], what: str) -> str:
        """Run ``action``: ``"ok"``, ``"refused"`` (the store rejected it) or ``"unreachable"`` (retry later)."""
        try:
            action()
        except TrackingRefused as error:
            logger.warning("the tracking store %s refused %s (%s); not logging it further", self.tracking_uri,
                           what, error)
            return "refused"
        except TrackingUnavailable as error:
            if not self._offline:
                logger.warning("the tracking store %s is unreachable (%s); the study goes on and logging retries "
                               "every %.0f s. Tune's results stay the source of truth.", self.tracking_uri, error,
                               self.retry_interval_s)
            self._offline = True
            self._retry_at = time.monotonic() + self.retry_interval_s
            return "unreachable"
        if self._offline:
            logger.warning("the tracking store %s is reachable again; sending what was kept", self.tracking_uri)
            self._offline = False
        return "ok"

    def _tracker_now(self) -> Tracker:
        if self._tracker is None:
            self._tracker = self.tracker_factory(self.tracking_uri, self.experiment)
        return self._tracker

    def _attach_parent(self) -> None:
        self._parent_id = self._tracker_now().attach_study(self.study, self.study_params)

    def _send_trial(self, state: _TrialLog) -> None:
        tracker = self._tracker_now()
        if state.run_id is None:
            run_id, created = tracker.attach_trial(self.study, self._parent_id, state.trial_id, state.config)
            state.logged = set() if created else tracker.logged_steps(run_id)
            if not created and state.final_status is None:
                tracker.set_status(run_id, TrialStatus.RUNNING)
            state.run_id = run_id
        rows = [row for row in state.pending if row.step not in state.logged]
        tracker.log_rows(state.run_id, rows)
        state.logged |= {row.step for row in rows}
        state.pending = []
        for key, value in state.tags.items():
            if state.tagged.get(key) != value:
                tracker.set_tag(state.run_id, key, value)
                state.tagged[key] = value
        if state.final_status is not None and not state.finalized:
            finish_trial(tracker, state.run_id, state.folders, state.final_status, draw=None)
            state.finalized = True

    def _finish_parent(self) -> None:
        self._tracker_now().set_status(self._parent_id, TrialStatus.FINISHED)
