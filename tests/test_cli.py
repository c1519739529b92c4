"""srdc-train: outputs, resume, refusal to overwrite, and one clear error with exit code 2 for bad input."""

import json
import subprocess
import sys

import pytest

from srdc.cli import main
from srdc.data.base import DatasetSpec, register, tensor_domain
from srdc.runio import read_history

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
    register(DatasetSpec(name="mismatch", load_domain=_mismatched_domain, domains=("ten", "three")))
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


def test_unknown_variant_is_rejected_by_the_parser_with_exit_code_2():
    result = subprocess.run([sys.executable, "-m", "srdc.cli", "--variant", "magic"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "invalid choice: 'magic'" in result.stderr


def test_non_finite_loss_exits_1_and_keeps_the_finished_epochs(tmp_path, capsys):
    assert main([*QUICK, "--out", str(tmp_path), "--lr", "1e12"]) == 1
    assert "lower --lr" in capsys.readouterr().err
    assert read_history(tmp_path)[0]["epoch"] == 0
