"""``srdc.runio``: a run's files are written atomically and read back as written."""

import json
import math

import pytest
import torch

from srdc.runio import (
    CHECKPOINT,
    HISTORY,
    SUMMARY,
    read_checkpoint,
    read_history,
    save_run,
    write_checkpoint,
    write_history,
    write_summary,
)

HISTORY_ROWS = [{"epoch": 1, "acc": 51.25, "lr": 0.01, "time": {"train": 1.5}},
                {"epoch": 2, "acc": 63.0, "lr": 0.0075, "time": {"train": 1.25}}]


def test_history_round_trips_one_sorted_line_per_epoch(tmp_path):
    write_history(tmp_path, HISTORY_ROWS)
    assert read_history(tmp_path) == HISTORY_ROWS
    lines = (tmp_path / HISTORY).read_text().splitlines()
    assert len(lines) == 2 and lines[0] == json.dumps(HISTORY_ROWS[0], sort_keys=True)
    write_history(tmp_path, HISTORY_ROWS[:1])
    assert read_history(tmp_path) == HISTORY_ROWS[:1]


def test_summary_round_trips_as_json(tmp_path):
    summary = {"acc_last": 70.5, "acc_best_oracle": 72.0, "acc_labelfree": 71.0, "config": {"seed": 3}}
    write_summary(tmp_path, summary)
    text = (tmp_path / SUMMARY).read_text()
    assert json.loads(text) == summary and text.endswith("}\n")


def test_checkpoint_round_trips_tensors_generators_and_python_values(tmp_path):
    generator = torch.Generator().manual_seed(7)
    state = {"model": {"w": torch.arange(6.0).reshape(2, 3)}, "epoch": 4, "generator": generator.get_state(),
             "history": HISTORY_ROWS, "weights": None}
    write_checkpoint(tmp_path, state)
    loaded = read_checkpoint(tmp_path)
    assert torch.equal(loaded["model"]["w"], state["model"]["w"])
    assert loaded["epoch"] == 4 and loaded["history"] == HISTORY_ROWS and loaded["weights"] is None
    restored = torch.Generator()
    restored.set_state(loaded["generator"])
    assert torch.equal(torch.rand(4, generator=restored), torch.rand(4, generator=generator))


def test_writes_replace_atomically_and_leave_no_temporary_file(tmp_path):
    write_history(tmp_path, HISTORY_ROWS)
    write_summary(tmp_path, {"acc_last": math.pi})
    write_checkpoint(tmp_path, {"epoch": 1})
    write_checkpoint(tmp_path, {"epoch": 2})
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([CHECKPOINT, HISTORY, SUMMARY])
    assert read_checkpoint(tmp_path) == {"epoch": 2}


class FakeTrainer:
    """What :func:`save_run` reads of a trainer."""

    history = HISTORY_ROWS

    def state_dict(self) -> dict:
        return {"epoch": 2, "model": {"b": torch.ones(2)}}

    def summary(self) -> dict:
        return {"acc_last": 63.0, "epochs": 2}


def test_save_run_creates_the_folder_and_writes_all_three_files(tmp_path):
    out = tmp_path / "runs" / "a_w"
    save_run(out, FakeTrainer())
    assert sorted(path.name for path in out.iterdir()) == sorted([CHECKPOINT, HISTORY, SUMMARY])
    assert read_history(out) == HISTORY_ROWS
    assert json.loads((out / SUMMARY).read_text()) == {"acc_last": 63.0, "epochs": 2}
    assert torch.equal(read_checkpoint(out)["model"]["b"], torch.ones(2))


class Unsaveable:
    """Fails half-way through ``torch.save``, as a full disk or a kill would."""

    def __reduce__(self):
        raise OSError("disk full")


def test_a_failed_write_keeps_the_previous_file_whole(tmp_path):
    write_checkpoint(tmp_path, {"epoch": 1})
    with pytest.raises(OSError, match="disk full"):
        write_checkpoint(tmp_path, {"epoch": 2, "state": Unsaveable()})
    assert read_checkpoint(tmp_path) == {"epoch": 1}
