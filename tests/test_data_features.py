"""``--dataset features``: reading ``.npz`` feature files, their errors, and ``srdc-train`` on a features pair."""

import numpy as np
import pytest
from data_helpers import check_summary, write_features

from srdc.cli import main
from srdc.config import SRDCConfig
from srdc.data import load_task
from srdc.errors import SRDCInputError


def test_features_pair_loads_in_memory_with_identity_backbone(tmp_path):
    src = write_features(tmp_path / "a.npz", 12, 5, 3, seed=0, classes=np.array(["x", "y", "z"]))
    tgt = write_features(tmp_path / "b.npz", 9, 5, 3, seed=1)
    task = load_task(SRDCConfig(dataset="features", source=str(src), target=str(tgt), setting="inductive"))
    assert task.default_backbone == "identity" and task.classes == ["x", "y", "z"]
    assert task.source.in_memory and task.source.train_set.tensors[0].shape == (12, 5)
    assert len(task.target) + len(task.target_test) == 9
    with np.load(src) as data:
        assert np.array_equal(task.source.train_set.tensors[0].numpy(), data["features"])


@pytest.mark.parametrize("change, message", [
    ({"dim": 4}, r"feature dimension mismatch: source .*a\.npz has d=5, target .*b\.npz has d=4"),
    ({"classes": 4}, r"label 3 is out of range for 3 classes \(from the 'classes' array of the feature files\)"),
    ({"labels_key": False}, r"b\.npz has no array 'labels' \(it has: features\)"),
    ({"float": False}, r"'features' must be an N x d float array, got int64"),
    ({"names": ["p", "q", "r"]}, r"the 'classes' arrays of .*a\.npz and .*b\.npz differ"),
])
def test_features_mismatches_are_named(tmp_path, change, message):
    src = write_features(tmp_path / "a.npz", 6, 5, 3, seed=0, classes=np.array(["x", "y", "z"]))
    rng = np.random.default_rng(0)
    arrays = {"features": rng.normal(size=(6, change.get("dim", 5))).astype(np.float32),
              "labels": np.arange(6) % change.get("classes", 3)}
    if not change.get("float", True):
        arrays["features"] = np.ones((6, 5), dtype=np.int64)
    if not change.get("labels_key", True):
        del arrays["labels"]
    if "names" in change:
        arrays["classes"] = np.array(change["names"])
    np.savez(tmp_path / "b.npz", **arrays)
    with pytest.raises(SRDCInputError, match=message):
        load_task(SRDCConfig(dataset="features", source=str(src), target=str(tmp_path / "b.npz")))


def test_missing_or_unreadable_features_file(tmp_path):
    src = write_features(tmp_path / "a.npz", 6, 5, 3, seed=0)
    with pytest.raises(SRDCInputError, match=r"features file .*nope\.npz does not exist; make one with: srdc-data"):
        load_task(SRDCConfig(dataset="features", source=str(src), target=str(tmp_path / "nope.npz")))
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(SRDCInputError, match=r"junk\.npz is not a readable \.npz file"):
        load_task(SRDCConfig(dataset="features", source=str(src), target=str(tmp_path / "junk.npz")))


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
