"""``srdc-train`` end to end on generated user data: --dataset imagelist and --dataset features."""

import json

import numpy as np
from test_data_helpers import make_jpeg, write_features

from srdc.cli import main

SUMMARY_KEYS = {"acc_last", "acc_best_oracle", "acc_labelfree", "best_oracle_epoch", "labelfree_epoch"}


def check_summary(out, epochs: int) -> dict:
    summary = json.loads((out / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary) and summary["epochs"] == epochs
    assert all(0.0 <= summary[key] <= 100.0 for key in ("acc_last", "acc_best_oracle", "acc_labelfree"))
    return summary


def test_train_on_image_lists(tmp_path):
    lines = {"src": [], "tgt": []}
    for domain, shade in (("src", 0), ("tgt", 60)):
        for label in range(3):
            for i in range(4):
                path = make_jpeg(tmp_path / "images" / domain / f"class {label}" / f"{i}.jpg", shade + 60 * label + i)
                lines[domain].append(f"../images/{domain}/class {label}/{i}.jpg {label}\n")
    (tmp_path / "lists").mkdir()
    for domain, entries in lines.items():
        (tmp_path / "lists" / f"{domain}.txt").write_text("".join(entries))
    assert path.is_file()
    out = tmp_path / "run"
    code = main(["--dataset", "imagelist", "--source", str(tmp_path / "lists" / "src.txt"),
                 "--target", str(tmp_path / "lists" / "tgt.txt"), "--backbone", "digits_cnn",
                 "--image_size", "16", "--batch_size", "6", "--epochs", "2", "--device", "cpu", "--quiet",
                 "--out", str(out)])
    assert code == 0
    summary = check_summary(out, 2)
    assert summary["config"]["dataset"] == "imagelist" and summary["config"]["image_size"] == 16


def test_train_on_features(tmp_path):
    names = np.array(["a", "b", "c", "d"])
    write_features(tmp_path / "A.npz", 40, 16, 4, seed=0, classes=names)
    write_features(tmp_path / "B.npz", 32, 16, 4, seed=1, classes=names)
    out = tmp_path / "run"
    code = main(["--dataset", "features", "--source", str(tmp_path / "A.npz"), "--target", str(tmp_path / "B.npz"),
                 "--batch_size", "8", "--epochs", "2", "--device", "cpu", "--quiet", "--out", str(out)])
    assert code == 0
    summary = check_summary(out, 2)
    assert summary["acc_best_oracle"] > 25.0  # 4 well-separated classes: better than chance after 2 epochs


def test_a_class_mismatch_exits_2_with_the_message(tmp_path, capsys):
    write_features(tmp_path / "A.npz", 8, 4, 2, seed=0)
    write_features(tmp_path / "B.npz", 8, 6, 2, seed=1)
    code = main(["--dataset", "features", "--source", str(tmp_path / "A.npz"), "--target", str(tmp_path / "B.npz"),
                 "--epochs", "2", "--quiet", "--out", str(tmp_path / "run")])
    assert code == 2
    assert "error: feature dimension mismatch" in capsys.readouterr().err
