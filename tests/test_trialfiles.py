"""``srdc.trialfiles`` on a local storage: the one fetch and its two failure modes, Tune's checkpoint folders (names,
completeness, the nearest complete one, the recovery copy), the launch file, the trials' histories and where a
storage path is."""

import logging

import pyarrow.fs
import pytest

from srdc.errors import SRDCInputError
from srdc.trialfiles import (
    CHECKPOINT,
    HISTORY,
    LAUNCH_FILE,
    LEASE_FILE,
    SIGNATURES_FILE,
    TRIAL_OUTPUTS,
    Selection,
    checkpoint_names,
    fetch_trial_files,
    holds_every_run,
    nearest_complete_checkpoint,
    read_histories,
    read_launch_file,
    read_storage_file,
    recover_checkpoint,
    remove_storage_file,
    storage_location,
    trusted_files,
    write_history,
    write_launch_file,
    write_storage_file,
)

LOCAL = pyarrow.fs.LocalFileSystem()
ROWS = [{"epoch": 0, "acc_target": 10.0}, {"epoch": 1, "acc_target": 20.0}]


def with_history(folder):
    """``folder``, created, with a history of :data:`ROWS`."""
    folder.mkdir(parents=True)
    write_history(folder, ROWS)
    return folder


def trial_with_checkpoints(folder, complete, empty=()):
    """A trial folder with the checkpoint folders ``complete`` (every run's file) and ``empty`` (a run's folder
    without its file), and a file that is not a checkpoint folder."""
    for name in complete:
        (folder / name / "run").mkdir(parents=True)
        (folder / name / "run" / CHECKPOINT).write_bytes(b"state")
    for name in empty:
        (folder / name / "run").mkdir(parents=True)
    (folder / "checkpoint_notes.txt").write_text("a file")
    return folder


def test_the_one_fetch_copies_its_selection_and_warns_or_raises_on_an_unreadable_storage(tmp_path, caplog):
    (with_history(tmp_path / "trial") / "other.txt").write_text("left out")
    copied = fetch_trial_files(f"file://{tmp_path}/trial", tmp_path / "copy", TRIAL_OUTPUTS, on_error="warn")
    assert sorted(path.name for path in copied.iterdir()) == [HISTORY]
    with caplog.at_level(logging.WARNING):
        assert fetch_trial_files("nosuch://bucket/trial", tmp_path / "none", TRIAL_OUTPUTS, "warn") == tmp_path / "none"
    assert "cannot read the trial files in nosuch://bucket/trial" in caplog.text
    with pytest.raises(SRDCInputError, match="cannot read nosuch://bucket/trial .*check --storage-path"):
        fetch_trial_files("nosuch://bucket/trial", tmp_path / "none", Selection((HISTORY,), depth=3), "raise")


def test_the_checkpoint_folders_of_a_trial_in_order_and_which_hold_every_run(tmp_path):
    folder = trial_with_checkpoints(tmp_path, ["checkpoint_000002", "checkpoint_000000"], ["checkpoint_000001"])
    assert checkpoint_names(LOCAL, str(folder)) == ["checkpoint_000000", "checkpoint_000001", "checkpoint_000002"]
    assert holds_every_run(LOCAL, f"{folder}/checkpoint_000000", ["run"])
    assert not holds_every_run(LOCAL, f"{folder}/checkpoint_000001", ["run"])
    assert not holds_every_run(LOCAL, f"{folder}/checkpoint_000000", ["run", "other"])
    assert nearest_complete_checkpoint(LOCAL, f"{folder}/checkpoint_000001", ["run"]) == "checkpoint_000002"
    assert nearest_complete_checkpoint(LOCAL, f"{folder}/checkpoint_000001", ["other"]) is None


def test_a_deleted_checkpoint_is_recovered_from_the_next_one(tmp_path):
    folder = trial_with_checkpoints(tmp_path, ["checkpoint_000000", "checkpoint_000003", "checkpoint_000002"])
    assert recover_checkpoint(LOCAL, f"{folder}/checkpoint_000002") is None  # there: nothing to do
    assert recover_checkpoint(LOCAL, f"{folder}/checkpoint_000001") == "checkpoint_000002"
    assert (folder / "checkpoint_000001" / "run" / CHECKPOINT).read_bytes() == b"state"
    assert recover_checkpoint(LOCAL, f"{folder}/checkpoint_000004") is None  # no newer one


def test_the_launch_file_round_trips_and_a_missing_one_is_none(tmp_path):
    assert read_launch_file(str(tmp_path / "study")) is None
    write_launch_file(str(tmp_path / "study"), '{"study_name": "s"}')
    assert (tmp_path / "study" / LAUNCH_FILE).read_text() == read_launch_file(str(tmp_path / "study"))
    with pytest.raises(SRDCInputError, match="cannot read the study folder nosuch://x"):
        read_launch_file("nosuch://x")


def test_the_histories_of_the_trials_that_have_one(tmp_path):
    with_history(tmp_path / "done")
    (tmp_path / "empty").mkdir()
    assert read_histories(str(tmp_path), ["done", "empty", "missing"]) == {"done": ROWS}


def test_a_storage_path_is_local_a_uri_or_unknown(tmp_path):
    assert storage_location(LOCAL, str(tmp_path)) == tmp_path
    s3 = pyarrow.fs.S3FileSystem(anonymous=True, region="us-east-1")
    assert storage_location(s3, "bucket/study/trial") == "s3://bucket/study/trial"
    assert storage_location(pyarrow.fs.SubTreeFileSystem("/", LOCAL), "x") is None


def test_a_storage_folders_files_are_written_read_removed_and_the_trusted_ones_listed(tmp_path):
    folder = str(tmp_path / "study")
    assert read_storage_file(folder, "x") is None and trusted_files(folder) == []
    for name in ("tuner.pkl", "experiment_state-2026.json", "basic-variant-state-1.json", LAUNCH_FILE, LEASE_FILE,
                 SIGNATURES_FILE, "optuna.db"):
        write_storage_file(folder, name, name.encode())
    (tmp_path / "study" / "trial_0").mkdir()
    assert read_storage_file(folder, "tuner.pkl") == b"tuner.pkl"
    assert trusted_files(folder) == sorted(["tuner.pkl", "experiment_state-2026.json", "basic-variant-state-1.json",
                                            LAUNCH_FILE])
    remove_storage_file(folder, LEASE_FILE)
    remove_storage_file(folder, LEASE_FILE)  # gone already: nothing
    assert read_storage_file(folder, LEASE_FILE) is None
