"""srdc-train: outputs, resume, refusal to overwrite, one process per run folder, a diverging run, and one clear
error with exit code 2 for bad input."""

import io
import json
import os
import subprocess
import sys

import pytest
import torch
from toys import ToyMethod

from srdc.base import bar_disabled
from srdc.cli import format_row, main
from srdc.data.base import DatasetSpec, register, tensor_domain
from srdc.methods import METHODS
from srdc.runio import CHECKPOINT_VERSION, RunLock, read_checkpoint
from srdc.trialfiles import CHECKPOINT, read_history

QUICK = ["--epochs", "2", "--max_samples", "200", "--batch_size", "32", "--quiet"]


def test_writes_summary_and_history(tmp_path, capsys):
    assert main([*QUICK, "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    for key in ("acc_last", "acc_best_oracle", "acc_labelfree", "best_oracle_epoch", "labelfree_epoch", "epochs",
                "wall_s", "config"):
        assert key in summary
    assert summary["epochs"] == 2 and summary["config"]["variant"] == "srdc"
    history = read_history(tmp_path)
    assert [row["epoch"] for row in history] == [0, 1, 2]
    assert summary["acc_last"] == history[-1]["acc_target"]
    assert "selected with target labels" in capsys.readouterr().out


def test_refuses_to_overwrite_and_resume_continues(tmp_path, capsys):
    out = str(tmp_path)
    assert main([*QUICK, "--out", out]) == 0
    assert main([*QUICK, "--out", out]) == 2
    assert "already holds a run" in capsys.readouterr().err
    before = read_history(tmp_path)
    assert main([*QUICK, "--out", out, "--resume"]) == 0  # finished run: nothing more to train
    assert read_history(tmp_path) == before


def test_config_fields_parse_with_underscores_or_dashes(tmp_path):
    assert main([*QUICK, "--out", str(tmp_path), "--lambda-scale", "0.5", "--aux_grad", "false",
                 "--task", "digits->digits_color", "--backbone_lr_mult", "none"]) == 0
    config = json.loads((tmp_path / "summary.json").read_text())["config"]
    assert config["lambda_scale"] == 0.5 and config["aux_grad"] is False
    assert (config["source"], config["target"]) == ("digits", "digits_color")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "nope"], "unknown dataset 'nope'"),
        (["--target", "mars"], "unknown domain 'mars'"),
        (["--task", "digits"], "cannot read task"),
        (["--dataset", "digits", "--source", "usps", "--target", "mnist", "--data_root", "/nonexistent"],
         "USPS not found"),
        (["--epochs", "0"], "epochs must be >= 1"),
        (["--dataset", "mismatch", "--source", "ten", "--target", "three"], "class-count mismatch"),
        (["--backbone", "vgg"], "unknown backbone"),
    ],
)
def test_bad_input_gives_one_clear_error_and_exit_code_2(tmp_path, capsys, args, message):
    register(DatasetSpec(name="mismatch", load_domain=_mismatched_domain, domains=("ten", "three"),
                         default_backbone="digits_cnn"))
    assert main([*QUICK, "--out", str(tmp_path / "run"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert "Traceback" not in err


def _mismatched_domain(domain, config):
    import torch

    classes = 10 if domain == "ten" else 3
    return tensor_domain(domain, [str(i) for i in range(classes)], torch.zeros(classes * 4, 3, 16, 16),
                         torch.arange(classes * 4) % classes)


def test_missing_data_message_names_the_download_command(tmp_path, capsys):
    code = main([*QUICK, "--out", str(tmp_path / "run"), "--dataset", "digits", "--source", "mnist",
                 "--target", "usps", "--data_root", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "MNIST not found" in err and "download=True" in err and str(tmp_path) in err


@pytest.mark.parametrize("option", ["--variant", "--labelfree_selector"])
@pytest.mark.integration
def test_unknown_registry_name_is_rejected_by_the_parser_with_exit_code_2(option):
    result = subprocess.run([sys.executable, "-m", "srdc.cli", option, "magic"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "invalid choice: 'magic'" in result.stderr


def test_progress_rows_show_what_the_row_holds():
    row0 = {"epoch": 0, "acc_target": 12.5, "acc_kmeans_pooled": 30.0, "infomax": 0.1234,
            "clustering_objective": -2.5, "wall_s_epoch": 1.25}
    line = format_row(row0, 10)
    assert line == ("epoch   0/10  acc_target  12.50  kmeans  30.00  infomax 0.123  clustering_objective -2.500  "
                    "1.2s")
    assert "nan" not in line and "loss" not in line
    row1 = {"epoch": 1, "acc_target": 50.0, "acc_target_test": 48.0, "infomax": 0.5, "loss_total": 1.5,
            "lr": 0.01, "lambda": 0.25, "wall_s_epoch": 2.0}  # no K-means accuracy, no clustering objective
    assert format_row(row1, 10) == ("epoch   1/10  acc_target  50.00  test 48.00  infomax 0.500  loss 1.5000  "
                                    "lr 0.01000  lambda 0.250  2.0s")


def test_the_progress_of_a_run_prints_no_placeholders_for_the_untrained_epoch(tmp_path, capsys):
    quick = [arg for arg in QUICK if arg != "--quiet"]
    assert main([*quick, "--epochs", "1", "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "" not in err.splitlines()  # stderr is no terminal here: no bar frames, no blank lines
    lines = [line for line in err.splitlines() if "acc_target" in line]
    assert [line.split()[1] for line in lines] == ["0/1", "1/1"]
    assert "nan" not in lines[0] and "loss" not in lines[0] and "lambda" not in lines[0]
    history = read_history(tmp_path)
    assert f"loss {history[1]['loss_total']:.4f}  lr {history[1]['lr']:.5f}  lambda {history[1]['lambda']:.3f}" \
        in lines[1]


def test_a_progress_bar_draws_on_a_terminal_only_and_never_when_not_asked_for():
    from tqdm import tqdm

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for stream, progress, drawn in ((io.StringIO(), True, False), (Terminal(), True, True), (Terminal(), False, False)):
        for _ in tqdm(range(3), file=stream, disable=bar_disabled(progress)):
            pass
        assert ("3/3" in stream.getvalue()) is drawn


def test_a_registered_method_is_a_variant_of_srdc_train(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(METHODS, "toy", ToyMethod)
    assert main([*QUICK, "--out", str(tmp_path), "--variant", "toy"]) == 0
    history = read_history(tmp_path)
    assert [row.get("phase") for row in history] == [None, "toy", "toy"]
    assert history[-1]["toy_class0_share"] == 100.0
    progress = capsys.readouterr().err
    assert "epoch   2/2  acc_target" in progress and "kmeans" not in progress


def test_non_finite_loss_exits_1_and_keeps_the_finished_epochs(tmp_path, capsys):
    assert main([*QUICK, "--out", str(tmp_path), "--lr", "1e12"]) == 1
    assert "lower --lr" in capsys.readouterr().err
    assert read_history(tmp_path)[0]["epoch"] == 0


def test_a_diverging_run_stops_before_recording_the_nan_epoch_and_resume_says_the_same(tmp_path, capsys):
    out = str(tmp_path)
    diverging = ["--lr", "1e6", "--epochs", "2", "--max_samples", "200", "--quiet"]  # finite loss, NaN validators
    assert main([*diverging, "--out", out]) == 1
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("error: the run diverged: ") and "at epoch 1; lower --lr (now 1000000.0)" in last
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [row["epoch"] for row in read_history(tmp_path)] == [0]
    assert summary["epochs"] == 0 and read_checkpoint(tmp_path)["epoch"] == 0  # all three: the last finite epoch
    assert main([*diverging, "--out", out, "--resume"]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == last
    assert [row["epoch"] for row in read_history(tmp_path)] == [0]


def test_resume_without_a_checkpoint_is_an_error_and_resume_or_start_starts(tmp_path, capsys):
    out = tmp_path / "mistyped"
    assert main([*QUICK, "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --resume: no checkpoint at {out / CHECKPOINT}") and "--resume-or-start" in err
    assert err.count("\n") == 1 and not out.exists()
    assert main([*QUICK, "--out", str(out), "--resume-or-start"]) == 0
    finished = read_history(out)
    assert [row["epoch"] for row in finished] == [0, 1, 2]
    assert main([*QUICK, "--out", str(out), "--resume-or-start"]) == 0  # continues: here, nothing left to train
    assert read_history(out) == finished


def test_a_folder_held_by_another_process_is_refused(tmp_path, capsys):
    with RunLock(tmp_path):
        assert main([*QUICK, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path} is in use by another srdc-train (pid {os.getpid()} on ")
    assert err.count("\n") == 1 and list(tmp_path.iterdir()) == []


class RunsCode:
    """A checkpoint's payload that runs a shell command when unpickled."""

    def __reduce__(self):
        return os.system, ("touch MARKER",)


@pytest.mark.integration
def test_resume_refuses_a_checkpoint_that_would_run_code(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    torch.save({"format": "srdc-checkpoint", "version": CHECKPOINT_VERSION, "state": {"epoch": 1, "x": RunsCode()}},
               out / CHECKPOINT)
    result = subprocess.run([sys.executable, "-m", "srdc.cli", *QUICK, "--out", str(out), "--resume"],
                            cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"error: {out / CHECKPOINT} is refused: ") and result.stderr.count("\n") == 1
    assert not (tmp_path / "MARKER").exists()
