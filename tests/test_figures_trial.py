"""A run's figures (srdc.figures): PNG files drawn from the record of the snapshots of the epochs its selections
pick, the snapshots through checkpoints, the records and figures a trial saves at its end (a drawing failure
reported, not fatal), the logger that only logs them, the backfill (``srdc-report --sync``) that draws what is
missing, and the figures as MLflow artifacts of a study's child runs."""

import dataclasses
import functools
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
import torch
from conftest import roundtrip, without_timings
from data_helpers import write_features
from PIL import Image

from srdc.base import TrialStatus
from srdc.config import SRDCConfig
from srdc.figures.recorder import FigureRecorder, recorder_for, selected_epochs
from srdc.figures.snapshot import EXTREMES, POINTS, confusion_matrix, figure_subset
from srdc.figures.trial import (
    DRAWING_CLOCK,
    LABELFREE,
    ORACLE,
    TrialRecord,
    draw_curves,
    draw_records,
    draw_within_budget,
    load_record,
    save_record,
    stale_records,
    write_trial_figures,
)
from srdc.harness.trainable import FIGURES_DEFERRED, FIGURES_FAILED, Lockstep
from srdc.tracking.logger import StudyLogger
from srdc.tracking.trial_end import finish_trial
from srdc.trainer import Trainer
from srdc.trialfiles import FIGURES_DIR, RECORD_FILES, matches, record_path
from srdc.validators import VALIDATORS

REPO = Path(__file__).resolve().parents[1]
ALL_FIGURES = {"curves.png", "confusion.png", "embedding.png", "source_weights.png", "source_images.png"}


def small_config(**overrides) -> SRDCConfig:
    values = {"epochs": 4, "batch_size": 32, "max_samples": 300, "device": "cpu"}
    values.update(overrides)
    return SRDCConfig(**values)


def assert_pngs(paths: list[Path]) -> None:
    for path in paths:
        assert path.stat().st_size > 0
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] > 0 and image.size[1] > 0


def record_every_epoch(trainer: Trainer) -> dict[int, dict]:
    """Train ``trainer`` to its end; the target confusion matrix and the source weights after every epoch, as an
    independent evaluation computes them."""
    seen = {}

    def on_epoch(trainer: Trainer, row: dict) -> None:
        target = trainer.extract(trainer.task.target)
        seen[row["epoch"]] = {
            "confusion": confusion_matrix(target.labels, target.logits.argmax(dim=1), trainer.task.num_classes),
            "weights": trainer.method.source_weights(trainer.plan).clone(),
        }

    trainer.fit(on_epoch)
    return seen


def recorded(config: SRDCConfig, task=None) -> tuple[Trainer, FigureRecorder]:
    """A trainer of ``config`` followed by the figures' recorder, as ``srdc-train`` and a trial make them."""
    recorder = recorder_for(config)
    return Trainer(config, task, observers=[recorder]), recorder


def record_of(trainer: Trainer, recorder: FigureRecorder):
    return recorder.trial_record(trainer.history, trainer.task.source)


@pytest.fixture(scope="module")
def trained() -> tuple[Trainer, FigureRecorder, dict[int, dict]]:
    """A run whose selections pick different epochs before the last (so the snapshots are not the last epoch's)."""
    trainer, recorder = recorded(small_config(lr=0.1, labelfree_selector="clustering"))
    return trainer, recorder, record_every_epoch(trainer)


def test_each_selection_keeps_the_snapshot_of_the_epoch_it_picks(trained):
    trainer, recorder, seen = trained
    summary = trainer.summary()
    picks = {ORACLE: summary["best_oracle_epoch"], LABELFREE: summary["labelfree_epoch"]}
    assert selected_epochs(trainer.history, trainer.config) == picks
    assert min(picks.values()) < trainer.config.epochs, f"the picks {picks} should include an earlier epoch"
    for selection, epoch in picks.items():
        snapshot = recorder.snapshots[selection]
        assert snapshot["epoch"] == epoch
        assert torch.equal(snapshot["confusion"], seen[epoch]["confusion"])
        counts = snapshot["confusion"]
        assert int(counts.sum()) == len(trainer.task.target)
        accuracy = 100.0 * float(counts.trace()) / float(counts.sum())
        assert accuracy == pytest.approx(trainer.history[epoch]["acc_target"], abs=1e-4)
        weights = seen[epoch]["weights"]
        assert torch.equal(snapshot["source_weights"], weights.half())
        order = torch.argsort(weights, descending=True, stable=True)
        assert torch.equal(snapshot["weights_top"], order[:EXTREMES])
        assert set(snapshot["weights_bottom"].tolist()) <= set(order[-EXTREMES:].tolist())


def test_the_snapshot_holds_a_fixed_subset_with_its_labels_and_predictions(trained):
    trainer, recorder, _ = trained
    snapshot = recorder.snapshots[LABELFREE]
    sizes = len(trainer.task.source), len(trainer.task.target)
    source_index, target_index = figure_subset(*sizes, trainer.config.seed)
    assert len(source_index) == min(sizes[0], POINTS) and len(target_index) == min(sizes[1], POINTS)
    assert torch.equal(snapshot["source_index"], torch.as_tensor(source_index))
    assert torch.equal(snapshot["source_labels"], torch.as_tensor(trainer.task.source.labels[source_index]))
    assert torch.equal(snapshot["target_labels"], torch.as_tensor(trainer.task.target.labels[target_index]))
    features = snapshot["features"]  # the pooled features as they are (scaled): reduced when drawn, not per epoch
    pooled = trainer.extract(trainer.task.source).spaces["pooled"]
    assert features.dtype == torch.float16 and features.shape == (len(source_index) + len(target_index),
                                                                   pooled.shape[1])
    assert float(features.abs().max()) == pytest.approx(1.0, abs=1e-3)
    assert (figure_subset(*sizes, trainer.config.seed)[1] == target_index).all()  # the same every time


def test_a_saved_record_draws_valid_pngs_with_the_picks_counts_and_its_curves_skip_missing_values(trained,
                                                                                                   tmp_path):
    trainer, recorder, _ = trained
    path = record_path(tmp_path)
    save_record(record_of(trainer, recorder), path)
    record = load_record(path)  # weights_only=True: plain values and tensors only
    assert record.picks == selected_epochs(trainer.history, trainer.config)
    for selection, snapshot in recorder.snapshots.items():
        assert torch.equal(record.snapshots[selection]["confusion"], snapshot["confusion"])
        assert record.snapshots[selection]["epoch"] == record.picks[selection]
    assert record.history == trainer.history and record.validators == [v.metric for v in VALIDATORS.values()]

    drawn = draw_records([path])
    assert drawn.unreadable == [] and {p.name for p in drawn.written} == ALL_FIGURES
    assert sorted(drawn.written) == sorted(p for p in (tmp_path / FIGURES_DIR).iterdir() if p.suffix == ".png")
    assert_pngs(drawn.written)
    assert all(path.stat().st_size < 400_000 for path in drawn.written)
    assert stale_records(tmp_path) == []

    lines = {line.get_label(): line for axis in draw_curves(record).axes for line in axis.get_lines()}
    assert list(lines["loss_total"].get_xdata()) == [1, 2, 3, 4]  # epoch 0 has no loss
    assert list(lines["acc_target"].get_xdata()) == [0, 1, 2, 3, 4]
    assert np.isfinite(lines["lambda"].get_ydata()).all() and "infomax" in lines and "clustering_objective" in lines
    picks = [line for label, line in lines.items() if "pick" in label]
    assert sorted(line.get_xdata()[0] for line in picks) == sorted(record.picks.values())


def test_the_record_holds_the_extreme_source_images_as_uint8_arrays(trained):
    trainer, recorder, _ = trained
    record = record_of(trainer, recorder)
    snapshot = recorder.snapshots[LABELFREE]
    extremes = [*snapshot["weights_top"].tolist(), *snapshot["weights_bottom"].tolist()]
    assert sorted(record.source_images) == sorted(set(extremes)) and len(extremes) == 2 * EXTREMES
    for index, (image, label) in record.source_images.items():
        shown, _ = trainer.task.source.eval_set[index]
        assert image.dtype == torch.uint8 and image.shape == (*shown.shape[1:], shown.shape[0])
        assert label == int(trainer.task.source.labels[index])
        expected = (shown.float() - shown.min()) * (255.0 / float(shown.max() - shown.min()))
        assert float((image.float() - expected.permute(1, 2, 0)).abs().max()) <= 0.5 + 1e-3


def test_a_resumed_run_ends_with_the_same_snapshots_and_figures_change_no_number(trained):
    uninterrupted, uninterrupted_recorder, _ = trained
    config = uninterrupted.config
    first, _ = recorded(config, uninterrupted.task)
    first.initialise()
    first.step()
    first.step()
    resumed, resumed_recorder = recorded(config, uninterrupted.task)
    resumed.load_state_dict(roundtrip(first.state_dict()))
    resumed.fit()
    assert without_timings(resumed.history) == without_timings(uninterrupted.history)
    assert resumed_recorder.snapshots.keys() == uninterrupted_recorder.snapshots.keys()
    for selection, snapshot in uninterrupted_recorder.snapshots.items():
        assert snapshot.keys() == resumed_recorder.snapshots[selection].keys()
        for key, value in snapshot.items():
            kept = resumed_recorder.snapshots[selection][key]
            assert torch.equal(value, kept) if torch.is_tensor(value) else value == kept, key

    without = Trainer(dataclasses.replace(config, figures=False), uninterrupted.task)
    without.fit()
    assert recorder_for(without.config) is None and without.state_dict()["observers"] == {}
    assert without_timings(without.history) == without_timings(uninterrupted.history)
    for (name, a), b in zip(uninterrupted.model.state_dict().items(), without.model.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name


def test_without_source_weights_or_images_those_figures_are_left_out(tmp_path):
    source_only, recorder = recorded(small_config(variant="source_only", epochs=1))
    source_only.fit()
    record = record_of(source_only, recorder)
    assert "source_weights" not in recorder.snapshots[LABELFREE] and record.source_images == {}
    written = write_trial_figures(record, tmp_path / "source_only")
    assert {path.name for path in written} == {"curves.png", "confusion.png", "embedding.png"}

    source, target = (write_features(tmp_path / f"{name}.npz", 120, 16, 4, seed) for name, seed in (("s", 0), ("t", 1)))
    features, recorder = recorded(SRDCConfig(dataset="features", source=str(source), target=str(target), epochs=2,
                                             batch_size=32, device="cpu"))
    features.fit()
    record = record_of(features, recorder)
    assert record.source_images == {}
    written = write_trial_figures(record, tmp_path / "features")
    assert {path.name for path in written} == ALL_FIGURES - {"source_images.png"}
    assert_pngs(written)


def test_a_trial_saves_a_record_per_run_and_draws_its_figures_named_by_run(tmp_path):
    config = {"tasks": [{"task": "digits->digits_photo"}], "seeds": [0, 1], "epochs": 1, "batch_size": 32,
              "max_samples": 120, "device": "cpu", "variant": "srdc", "figures_budget": 1e6}
    runs = Lockstep(config)
    runs.initialise()
    runs.step()
    assert runs.draw_figures(tmp_path) == {}
    keys = [f"digits-digits_photo.seed{seed}" for seed in (0, 1)]
    names = {path.name for path in (tmp_path / FIGURES_DIR).iterdir()}
    assert names == {f"{key}.{name}" for key in keys for name in (*ALL_FIGURES, "record.pt")}
    for key, member in zip(keys, runs.members, strict=True):
        assert load_record(tmp_path / FIGURES_DIR / f"{key}.record.pt").seed == member.trainer.config.seed
    assert_pngs(list((tmp_path / FIGURES_DIR).glob("*.png")))
    assert stale_records(tmp_path) == []

    for png in (tmp_path / FIGURES_DIR).glob("*.png"):  # a backfill draws what a folder lacks
        png.unlink()
    assert [path.name for path in stale_records(tmp_path)] == [f"{key}.record.pt" for key in keys]
    draw_records(stale_records(tmp_path))
    names = {path.name for path in (tmp_path / FIGURES_DIR).glob("*.png")}
    assert names == {f"{key}.{name}" for key in keys for name in ALL_FIGURES}
    assert stale_records(tmp_path) == []
    newer = tmp_path / FIGURES_DIR / f"{keys[1]}.record.pt"
    drawn = (tmp_path / FIGURES_DIR / f"{keys[1]}.curves.png").stat().st_mtime_ns
    os.utime(newer, ns=(drawn + 10**9,) * 2)  # a copy of the folder (Tune's into its storage) reorders the times
    assert stale_records(tmp_path) == []  # the figures are stamped with their record's digest
    first = load_record(tmp_path / FIGURES_DIR / f"{keys[0]}.record.pt")
    save_record(first, newer)  # a restored trial that ended again with another record
    assert stale_records(tmp_path) == [newer]
    unstamped = tmp_path / "unstamped"  # figures drawn before the stamp: judged by their time
    write_trial_figures(first, unstamped / FIGURES_DIR, f"{keys[0]}.")
    save_record(first, unstamped / FIGURES_DIR / f"{keys[0]}.record.pt")
    os.utime(unstamped / FIGURES_DIR / f"{keys[0]}.curves.png", ns=(drawn - 10**9,) * 2)
    assert [path.name for path in stale_records(unstamped)] == [f"{keys[0]}.record.pt"]

    without = Lockstep({**config, "figures": False, "seeds": [0]})
    without.initialise()
    without.step()
    assert without.draw_figures(tmp_path / "without") == {}
    assert not (tmp_path / "without").exists()


def test_a_run_whose_drawing_would_exceed_its_budget_keeps_its_record_for_a_backfill(tmp_path, monkeypatch):
    config = {"tasks": [{"task": "digits->digits_photo"}], "seeds": [0, 1], "epochs": 1, "batch_size": 32,
              "max_samples": 120, "device": "cpu", "variant": "srdc"}
    runs = Lockstep(config)
    runs.initialise()
    runs.step()
    training_s = [sum(row["wall_s_epoch"] for row in member.trainer.history if "wall_s_epoch" in row)
                  for member in runs.members]
    assert min(training_s) > 0
    # this process's last drawing took 4x the budget of the run with the longer training: both runs defer
    monkeypatch.setattr(DRAWING_CLOCK, "last_drawing_s", 4 * 0.25 * max(training_s))
    assert runs.draw_figures(tmp_path) == {FIGURES_DEFERRED: 2}
    assert sorted(path.name for path in (tmp_path / FIGURES_DIR).iterdir()) == \
        [f"digits-digits_photo.seed{seed}.record.pt" for seed in (0, 1)]
    assert len(stale_records(tmp_path)) == 2  # what a backfill (srdc-report --sync) draws
    assert DRAWING_CLOCK.last_drawing_s == 4 * 0.25 * max(training_s)  # nothing drawn, nothing measured

    # within the budget (0.9x the shorter training's) the first run draws, and its measured drawing judges the second
    monkeypatch.setattr(DRAWING_CLOCK, "last_drawing_s", 0.9 * 0.25 * min(training_s))
    reported = runs.draw_figures(tmp_path / "within")
    assert DRAWING_CLOCK.last_drawing_s != 0.9 * 0.25 * min(training_s)  # measured
    pngs = {path.name for path in (tmp_path / "within" / FIGURES_DIR).glob("*.png")}
    drawn = [seed for seed in (0, 1) if {f"digits-digits_photo.seed{seed}.{name}" for name in ALL_FIGURES} <= pngs]
    assert reported in ({}, {FIGURES_DEFERRED: 1})
    assert drawn == ([0, 1] if reported == {} else [0]) and len(pngs) == len(drawn) * len(ALL_FIGURES)


def test_a_process_always_makes_its_first_drawing_and_measures_it(trained, tmp_path, monkeypatch):
    trainer, figures, _ = trained
    monkeypatch.setattr(DRAWING_CLOCK, "last_drawing_s", None)
    record = record_of(trainer, figures)
    path = tmp_path / FIGURES_DIR / "record.pt"
    save_record(record, path)
    start = time.perf_counter()
    assert draw_within_budget(record, path, training_s=1e-9, budget=0.0)
    assert 0 < DRAWING_CLOCK.last_drawing_s <= time.perf_counter() - start
    assert stale_records(tmp_path) == []
    assert not draw_within_budget(record, path, training_s=1e-9, budget=0.0)  # the next one is over budget


def test_remote_copies_pick_the_records_in_the_figures_folder_but_not_deeper_files():
    names = ("summary.json", RECORD_FILES)
    assert matches(PurePosixPath("exp/trial/figures/record.pt"), names, depth=3)
    assert matches(PurePosixPath("figures/KEY.record.pt"), names, depth=1)
    assert matches(PurePosixPath("summary.json"), names, depth=1)
    assert not matches(PurePosixPath("exp/trial/checkpoint_000001/figures/record.pt"), names, depth=3)
    assert not matches(PurePosixPath("figures/curves.png"), names, depth=1)
    assert not matches(PurePosixPath("other/record.pt"), names, depth=1)


class ArtifactRecorder:
    """The part of the Tracker interface :func:`finish_trial` and :class:`StudyLogger` use: the files logged, by
    artifact path, and the status."""

    def __init__(self) -> None:
        self.files: dict[str | None, dict[str, bytes]] = {}
        self.status: str | None = None

    def __call__(self, tracking_uri: str, experiment: str) -> "ArtifactRecorder":
        """As the logger's tracker factory (picklable, unlike a lambda)."""
        return self

    def attach_study(self, study: str, params: dict) -> str:
        return "parent"

    def attach_trial(self, study: str, parent_id: str, trial_id: str, config: dict) -> tuple[str, bool]:
        return trial_id, True

    def log_rows(self, run_id: str, rows: list) -> None:
        pass

    def log_summary(self, run_id: str, summary: dict) -> None:
        pass

    def log_files(self, run_id: str, paths: list[Path], artifact_path: str | None = None) -> None:
        self.files.setdefault(artifact_path, {}).update({path.name: path.read_bytes() for path in paths})

    def set_status(self, run_id: str, status: str) -> None:
        if run_id != "parent":
            self.status = status


def trial_folder(folder: Path, record: TrialRecord, name: str = "record.pt") -> Path:
    """A trial folder as a trial leaves it: its summary and a figure record."""
    (folder / FIGURES_DIR).mkdir(parents=True, exist_ok=True)
    (folder / "summary.json").write_text(json.dumps({"epochs": 4}))
    save_record(record, folder / FIGURES_DIR / name)
    return folder


@pytest.mark.integration
def test_a_trials_figures_are_drawn_from_its_records_and_logged_under_figures_from_its_folder_or_its_bucket(
        trained, tmp_path, s3_bucket):
    trainer, recorder, _ = trained
    local = trial_folder(tmp_path / "trial", record_of(trainer, recorder))
    (local / FIGURES_DIR / "notes.txt").write_text("not a figure")
    recorder = ArtifactRecorder()
    finish_trial(recorder, "run", [local], TrialStatus.FINISHED)
    on_disk = {path.name: path.read_bytes() for path in (local / FIGURES_DIR).glob("*.png")}
    assert set(on_disk) == ALL_FIGURES and recorder.files[FIGURES_DIR] == on_disk
    assert set(recorder.files[None]) == {"summary.json"} and recorder.status == TrialStatus.FINISHED
    assert_pngs(list((local / FIGURES_DIR).glob("*.png")))

    client = s3_bucket.client()
    record = (local / FIGURES_DIR / "record.pt").read_bytes()
    client.put_object(Bucket=s3_bucket.name, Key="study/trial/summary.json", Body=json.dumps({"epochs": 2}))
    client.put_object(Bucket=s3_bucket.name, Key="study/trial/figures/record.pt", Body=record)
    client.put_object(Bucket=s3_bucket.name, Key="study/trial/checkpoint_000001/figures/old.record.pt", Body=record)
    remote = ArtifactRecorder()
    finish_trial(remote, "run", [tmp_path / "missing", s3_bucket.uri("study/trial")], TrialStatus.FINISHED)
    assert set(remote.files[FIGURES_DIR]) == ALL_FIGURES and remote.status == TrialStatus.FINISHED


def truncated(record: TrialRecord, path: Path) -> None:
    save_record(record, path)
    path.write_bytes(path.read_bytes()[:1000])


def ill_typed(wrong: dict, record: TrialRecord, path: Path) -> None:
    save_record(dataclasses.replace(record, **wrong), path)


@pytest.mark.parametrize("spoil", [truncated, *(functools.partial(ill_typed, wrong) for wrong in [
    {"picks": {ORACLE: "3", LABELFREE: "2"}},  # right keys, wrong types: the curves would compare str with int
    {"history": [[("epoch", 0)]], "seed": 1.5},
    {"snapshots": {LABELFREE: {"confusion": [[1, 0], [0, 1]], "features": "x"}}},
    {"snapshots": {LABELFREE: {"confusion": torch.zeros(3), "features": torch.zeros(2)}}},  # tensors, bad shapes
])], ids=["truncated", "picks", "history", "snapshot values", "snapshot shapes"])
def test_a_truncated_or_ill_typed_record_is_one_warning_naming_it_and_the_rest_is_logged(trained, tmp_path, caplog,
                                                                                          spoil):
    trainer, recorder, _ = trained
    good = record_of(trainer, recorder)
    folder = trial_folder(tmp_path, good, "good.record.pt")
    bad = folder / FIGURES_DIR / "bad.record.pt"
    spoil(good, bad)
    recorder = ArtifactRecorder()
    with caplog.at_level(logging.WARNING, logger="srdc.tracking"):
        finish_trial(recorder, "run", [folder], TrialStatus.FINISHED)
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(bad) in warnings[0] and "\n" not in warnings[0]
    assert set(recorder.files[FIGURES_DIR]) == {f"good.{name}" for name in ALL_FIGURES}
    assert not list(folder.glob(f"{FIGURES_DIR}/bad.*.png"))
    assert set(recorder.files[None]) == {"summary.json"} and recorder.status == TrialStatus.FINISHED


def test_a_resume_logs_the_figures_and_end_of_a_trial_that_ended_before_its_driver_was_killed(
        trained, tmp_path, capsys):
    from mlflow import MlflowClient

    from srdc.harness.options import Launch
    from srdc.harness.outcome import backfill_ended_trials
    from srdc.tracking import MLflowTracker

    trainer, recorder, _ = trained
    config = {"task": "A->W", "variant": "srdc", "seed": 0, "epochs": 4}
    folder = trial_folder(tmp_path / "ray" / "s" / "train_00000", record_of(trainer, recorder))
    drawn = write_trial_figures(load_record(folder / FIGURES_DIR / "record.pt"), folder / FIGURES_DIR)
    deferred = trial_folder(tmp_path / "ray" / "s" / "train_00001", record_of(trainer, recorder))  # over budget
    for trial_id, trial in (("00000", folder), ("00001", deferred)):
        (trial / "params.json").write_text(json.dumps({**config, "seed": int(trial_id)}))
        (trial / "result.json").write_text("".join(json.dumps({"epoch": epoch, "acc_target": 50.0 + epoch,
                                                               "trial_id": trial_id}) + "\n" for epoch in range(5)))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MLflowTracker(uri, "e")  # as the killed driver left it: the runs open, their epochs, no end
    parent = tracker.attach_study("s", {"seeds": 2})
    run_ids = [tracker.attach_trial("s", parent, trial_id, {**config, "seed": seed})[0]
               for seed, trial_id in enumerate(("00000", "00001"))]
    launch = Launch(study_name="s", storage_path=str(tmp_path / "ray"), data_root="/d", tracking_uri=uri,
                    experiment="e", resume=True)
    assert backfill_ended_trials(launch, "s", {"seeds": 2}) is None
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("resume: MLflow checked against the 2 trial folders: the ended trials' summaries, "
                           "figures and statuses logged where missing (0 runs created, 10 epochs added)")
    client = MlflowClient(uri)
    listed = {PurePosixPath(a.path).name: a.file_size for a in client.list_artifacts(run_ids[0], FIGURES_DIR)}
    assert listed == {path.name: path.stat().st_size for path in drawn} and set(listed) == ALL_FIGURES
    # the deferred drawing stays deferred: a resume does not spend the driver's time on it
    assert client.list_artifacts(run_ids[1], FIGURES_DIR) == [] and stale_records(deferred) != []
    assert [client.get_run(run_id).info.status for run_id in run_ids] == ["FINISHED", "FINISHED"]


def ended_trial(logger: StudyLogger, trial_id: str, folder: Path) -> None:
    logger.trial_started(trial_id, {"seed": 0}, [folder])
    logger.trial_ended(trial_id, {"seed": 0}, [folder], TrialStatus.FINISHED)


def test_a_figure_that_cannot_be_drawn_leaves_the_trials_results_and_names_its_traceback(tmp_path, monkeypatch):
    config = {"task": "digits->digits_photo", "seed": 0, "epochs": 1, "batch_size": 32, "max_samples": 120,
              "device": "cpu", "variant": "srdc"}
    runs = Lockstep(config)
    runs.initialise()
    runs.step()

    def broken(*args, **kwargs):
        raise ValueError("a drawing defect")

    monkeypatch.setattr("srdc.figures.trial.write_trial_figures", broken)
    assert runs.draw_figures(tmp_path) == {FIGURES_FAILED: 1}
    error = (tmp_path / FIGURES_DIR / "error.txt").read_text()
    assert "ValueError: a drawing defect" in error and "Traceback" in error
    assert (tmp_path / FIGURES_DIR / "record.pt").is_file()  # a backfill can still draw them
    assert runs.summary()["epochs"] == 1


def test_the_logger_logs_the_figures_a_trial_drew_and_draws_none_itself(trained, tmp_path):
    trainer, figures, _ = trained
    recorder = ArtifactRecorder()
    logger = StudyLogger("logged", "e", "memory://", {"seeds": 1}, tracker_factory=recorder)
    logger.setup()
    drawn = trial_folder(tmp_path / "drawn", record_of(trainer, figures))
    write_trial_figures(load_record(drawn / FIGURES_DIR / "record.pt"), drawn / FIGURES_DIR)
    ended_trial(logger, "drawn", drawn)
    logger.flush()
    on_disk = {path.name: path.read_bytes() for path in (drawn / FIGURES_DIR).glob("*.png")}
    assert set(on_disk) == ALL_FIGURES and recorder.files[FIGURES_DIR] == on_disk
    assert recorder.status == TrialStatus.FINISHED

    undrawn = trial_folder(tmp_path / "undrawn", record_of(trainer, figures))  # e.g. its drawing failed
    recorder.files.clear()
    ended_trial(logger, "undrawn", undrawn)
    logger.sweep_ended()
    assert FIGURES_DIR not in recorder.files and not list((undrawn / FIGURES_DIR).glob("*.png"))
    assert set(recorder.files[None]) == {"summary.json"}


@pytest.mark.slow
def test_a_smoke_studys_child_run_and_a_synced_one_list_the_figures(tmp_path):
    from mlflow import MlflowClient

    from srdc.tracking import sync_study

    command = [sys.executable, str(REPO / "studies" / "ablation_office31.py"), "--smoke-test", "--tasks", "A->W",
               "--seeds", "0", "--variants", "srdc", "--storage-path", str(tmp_path / "ray"), "--tracking-uri",
               f"sqlite:///{tmp_path / 'mlflow.db'}"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=1200,
                          env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (trial,) = [path.parent for path in (tmp_path / "ray").glob("*/*/params.json")]
    on_disk = sorted(path.name for path in (trial / FIGURES_DIR).iterdir())
    assert on_disk == sorted(ALL_FIGURES | {"record.pt"})  # the trial's record and the figures it drew
    assert_pngs(list((trial / FIGURES_DIR).glob("*.png")))

    for uri in (f"sqlite:///{tmp_path / 'mlflow.db'}", f"sqlite:///{tmp_path / 'synced.db'}"):
        if "synced" in uri:  # a backfill of a study whose figures were never drawn draws them
            for png in (trial / FIGURES_DIR).glob("*.png"):
                png.unlink()
            sync_study(trial.parent, trial.parent.name, uri)
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name("srdc-studies")
        (child,) = client.search_runs([experiment.experiment_id], "tags.`srdc.role` = 'child'")
        listed = {PurePosixPath(a.path).name: a.file_size for a in client.list_artifacts(child.info.run_id, "figures")}
        assert listed == {path.name: path.stat().st_size for path in (trial / FIGURES_DIR).glob("*.png")}
        assert set(listed) == ALL_FIGURES
        assert json.loads((trial / "summary.json").read_text())["epochs"] == 2
