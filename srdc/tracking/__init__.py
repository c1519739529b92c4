"""Tracking of studies: one parent run per study, one child run per trial, in a tracking store (MLflow).

* :mod:`srdc.tracking.base`: the :class:`Tracker` interface, its value types and errors;
* :mod:`srdc.tracking.mlflow_tracker`: :class:`MLflowTracker`, the only module that imports MLflow (lazily);
* :mod:`srdc.tracking.logger`: :class:`StudyLogger`, which a study's driver calls to mirror it live;
* :mod:`srdc.tracking.trial_end`: what a trial's end logs (summary, files, figures, status), live or in a backfill;
* :mod:`srdc.tracking.sync`: :func:`sync_study`, the backfill from Tune's results on disk;
* :mod:`srdc.tracking.results`: a study's results (tables, metrics, tags, description) on its parent run.
* :mod:`srdc.tracking.ui`: the link that opens a study in MLflow's UI, and the lean command that serves it.

Importing this package imports neither MLflow nor Ray.
"""

from srdc.tracking.base import (
    DEFAULT_EXPERIMENT,
    EpochRow,
    StudyRef,
    Tracker,
    TrackingRefused,
    TrackingServerFailed,
    TrackingUnavailable,
    check_tracking_uri,
    epoch_row,
    limit_http_retries,
    resolve_tracking_uri,
    summary_metrics,
)
from srdc.tracking.logger import StudyLogger
from srdc.tracking.mlflow_tracker import MLflowTracker, open_tracker
from srdc.tracking.results import publish_results, publish_study, store_results, write_results
from srdc.tracking.sync import SyncReport, ended_run_status, sync_study
from srdc.tracking.trial_end import Folder, local_folders

__all__ = [
    "DEFAULT_EXPERIMENT",
    "EpochRow",
    "Folder",
    "MLflowTracker",
    "StudyLogger",
    "StudyRef",
    "SyncReport",
    "Tracker",
    "TrackingRefused",
    "TrackingServerFailed",
    "TrackingUnavailable",
    "check_tracking_uri",
    "epoch_row",
    "limit_http_retries",
    "local_folders",
    "open_tracker",
    "publish_results",
    "publish_study",
    "resolve_tracking_uri",
    "store_results",
    "summary_metrics",
    "sync_study",
    "ended_run_status",
    "write_results",
]
