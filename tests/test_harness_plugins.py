"""Plug-ins: a toy method and a toy label-free validator (``tests/helpers/toys.py``), each one class or function plus
one registry line, run through a real Ray Tune study, tracked and tabled like the paper's variants."""

import json
from pathlib import Path

import pytest
import ray
import toys
from conftest import read_jsonl
from mlflow import MlflowClient
from toys import TOY_ITERATIONS, TOY_VALIDATOR, ToyMethod

import srdc.methods
import srdc.validators
from srdc.base import TrialStatus
from srdc.harness.declarations import Study
from srdc.harness.options import resolve_launch
from srdc.harness.outcome import run_study
from srdc.harness.trainable import train_srdc
from srdc.methods import METHODS
from srdc.validators import VALIDATORS


def trainable_with_toys():
    """The study's trainable, registering the toys first: a Ray worker is a process of its own, which imports
    ``srdc`` but not the test folder (so the toys travel by value)."""
    ray.cloudpickle.register_pickle_by_value(toys)

    def train_with_toys(config: dict) -> None:
        srdc.methods.METHODS["toy"] = ToyMethod  # through the module: the worker's own registry
        srdc.validators.VALIDATORS["toy"] = TOY_VALIDATOR
        train_srdc(config)

    return train_with_toys


@pytest.fixture
def registered(monkeypatch):
    """The two registry lines, in this process."""
    monkeypatch.setitem(METHODS, "toy", ToyMethod)
    monkeypatch.setitem(VALIDATORS, "toy", TOY_VALIDATOR)


@pytest.mark.slow
def test_a_toy_method_and_validator_run_through_a_study(tmp_path, registered, ray_cluster):
    study = Study(name="toys", dataset="embedded", tasks=("digits->digits_photo",), variants=("source_only", "toy"),
                  seeds=(0,), config={"epochs": 3, "max_samples": 200, "batch_size": 32})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    launch = resolve_launch(study, ["--storage-path", str(tmp_path / "ray"), "--tracking-uri", uri])
    outcome = run_study(study, launch, trainable=trainable_with_toys())
    assert outcome.exit_code == 0 and outcome.counts[TrialStatus.FINISHED] == 2

    by_variant = {record["variant"]: Path(record["path"]) for record in outcome.records}
    toy = read_jsonl(by_variant["toy"] / "history.jsonl")
    trained = toy[1:]
    assert [row["phase"] for row in trained] == ["toy"] * 3 and {row["iterations"] for row in trained} == {3}
    assert TOY_ITERATIONS == 3 and all({"loss_push", "loss_pull"} <= set(row) for row in trained)
    # the toy's loss pushes every target sample into class 0, and its own parameter towards 1
    assert toy[0]["toy_class0_share"] < 50.0 < trained[-1]["toy_class0_share"]
    assert trained[-1]["loss_pull"] < trained[0]["loss_pull"]
    for variant, folder in by_variant.items():  # every registered validator, every method, every epoch
        history = read_jsonl(folder / "history.jsonl")
        assert all(0.0 < row["toy_confidence"] <= 1.0 for row in history), variant
        summary = json.loads((folder / "summary.json").read_text())
        best = max(history[1:], key=lambda row: row["toy_confidence"])
        assert summary["labelfree_epoch_toy"] == best["epoch"]
        assert summary["acc_labelfree_toy"] == best["acc_target"]

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(launch.experiment).experiment_id],
                              "tags.`srdc.role` = 'child'")
    (toy_run,) = [run for run in runs if run.data.tags["variant"] == "toy"]
    (source_run,) = [run for run in runs if run.data.tags["variant"] == "source_only"]
    # the toy's own options are its run's params; SRDC's K-means options are not (the toy does not read them)
    assert (toy_run.data.params["toy_iterations"], toy_run.data.params["toy_pull_weight"]) == ("3", "1.0")
    assert "kmeans_iters" not in toy_run.data.params and "kmeans_iters" in source_run.data.params
    assert "toy_iterations" not in source_run.data.params
    toy_summary = json.loads((by_variant["toy"] / "summary.json").read_text())
    assert toy_run.data.metrics["acc_labelfree_toy"] == toy_summary["acc_labelfree_toy"]
    confidences = client.get_metric_history(toy_run.info.run_id, "toy_confidence")
    assert sorted(metric.step for metric in confidences) == [0, 1, 2, 3]

    lines = outcome.describe().splitlines()
    assert any(line.startswith("| toy | ") for line in lines) and any(line.startswith("| source_only | ")
                                                                      for line in lines)
