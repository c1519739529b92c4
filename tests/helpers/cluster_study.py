"""A study driver for tests/test_cluster_multinode.py: the harness's own options and study runner (so that
``--address`` picks the Ray cluster), around a trainable that records where and when each trial ran.

    python tests/helpers/cluster_study.py SPANS_DIR [study options, e.g. --address HOST:PORT --gpus-per-trial 0.5]

Each trial first waits (up to ``BARRIER_TIMEOUT_S``) until ``BARRIER`` trials have started, so that all the trials
the cluster can hold at once do run at once; then it trains and appends one line to ``SPANS_DIR/spans.jsonl``:
its trial id, Ray node, and the wall-clock times it started and ended.
"""

import json
import sys
import time
from pathlib import Path
from typing import Any

from srdc.base import run_main
from srdc.harness.declarations import Study
from srdc.harness.options import resolve_launch
from srdc.harness.outcome import run_study
from srdc.harness.trainable import train_srdc

TRIALS = 12
BARRIER = 8  # 2 worker nodes x 2 GPUs / 0.5 GPU per trial
BARRIER_TIMEOUT_S = 300.0
STUDY = Study(name="placement", dataset="embedded", tasks=("digits->digits_photo",), variants=("source_only",),
              seeds=tuple(range(TRIALS)), config={"epochs": 2, "max_samples": 200, "batch_size": 32})
SPANS = Path(sys.argv[1]).resolve()


def recorded(config: dict[str, Any]) -> None:
    """``train_srdc`` with the trial's span recorded (this function travels to the trial by value)."""
    import ray
    from ray import tune

    started = time.time()
    trial_id = tune.get_context().get_trial_id()
    (SPANS / f"{trial_id}.started").touch()
    deadline = time.monotonic() + BARRIER_TIMEOUT_S
    while len(list(SPANS.glob("*.started"))) < BARRIER and time.monotonic() < deadline:
        time.sleep(0.2)
    train_srdc(config)
    span = {"trial_id": trial_id, "node": ray.get_runtime_context().get_node_id(), "start": started,
            "end": time.time()}
    with open(SPANS / "spans.jsonl", "a") as out:
        out.write(json.dumps(span) + "\n")


def run() -> int:
    SPANS.mkdir(parents=True, exist_ok=True)
    outcome = run_study(STUDY, resolve_launch(STUDY, sys.argv[2:]), trainable=recorded)
    print(outcome.describe())
    return outcome.exit_code


if __name__ == "__main__":
    sys.exit(run_main(run))
