"""How to browse a study in MLflow's UI: the link that opens its runs table, and the lean command that serves the
UI of an embedded store. Strings only: nothing here imports MLflow or talks to a store.

MLflow 3.17's UI takes an experiment's view (its GenAI overview, or the classic runs table of "Model training") from
the link's ``workflowType`` or, without one, from the browser's last choice, GenAI on a first visit; the experiment's
``mlflow.experimentKind`` tag does not change it. A link to the runs tab (``#/experiments/ID/runs``) with
:data:`RUNS_VIEW` opens the runs table, and keeps its ``searchFilter``, which the experiment's bare page
(``#/experiments/ID``) drops when it redirects to a tab.
"""

from __future__ import annotations

import shlex
import urllib.parse

# the query that picks the classic runs table (mlflow/server/js: WorkflowType.MACHINE_LEARNING)
RUNS_VIEW = {"workflowType": "machine_learning"}
# what `mlflow ui` serves the UI with by default
LOCAL_UI = "http://127.0.0.1:5000"
# `mlflow ui` without the job runner (GenAI jobs, unused by studies: it starts huey consumers) and with one uvicorn
# worker instead of 4: a quarter of the memory, healthy sooner (benchmarks/mlflow_ui.py)
LEAN_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
LEAN_OPTIONS = ("--workers", "1")


def runs_table_link(base_url: str, experiment_id: str, parent_run_id: str) -> str:
    """The link that opens the experiment's runs table on one study: its parent run, its trials nested under it (the
    filter matches the trials; the table adds their parent)."""
    query = {**RUNS_VIEW, "searchFilter": f"tags.mlflow.parentRunId = '{parent_run_id}'"}
    encoded = urllib.parse.urlencode(query, quote_via=urllib.parse.quote)  # spaces as %20
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs?{encoded}"


def ui_command(python: str, tracking_uri: str) -> str:
    """The shell command that serves the UI of the store at ``tracking_uri`` on :data:`LOCAL_UI` with ``python``
    (``-m mlflow``, no activated environment needed), leanly (:data:`LEAN_ENV`, :data:`LEAN_OPTIONS`)."""
    env = [f"{key}={value}" for key, value in LEAN_ENV.items()]
    return shlex.join([*env, python, "-m", "mlflow", "ui", *LEAN_OPTIONS, "--backend-store-uri", tracking_uri])
