"""``--dataset features``: reading ``.npz`` feature files, their errors, and ``srdc-train`` on a features pair."""

import io
import zipfile

import numpy as np
import pytest
from data_helpers import check_summary, write_features

from srdc.cli import main
from srdc.config import SRDCConfig
from srdc.data import load_task
from srdc.data.features import MAX_FEATURE_DIM, normalize_features
from srdc.errors import SRDCInputError


def test_features_pair_loads_in_memory_with_identity_backbone(tmp_path):
    src = write_features(tmp_path / "a.npz", 12, 5, 3, seed=0, classes=np.array(["x", "y", "z"]))
    tgt = write_features(tmp_path / "b.npz", 9, 5, 3, seed=1)
    task = load_task(SRDCConfig(dataset="features", source=str(src), target=str(tgt), setting="inductive",
                                feature_norm="none"))
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


def headers_only(path, **shapes) -> None:
    """A ``.npz`` whose members hold only a ``.npy`` header declaring each array's shape (float32), no data."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, shape in shapes.items():
            header = io.BytesIO()
            np.lib.format.write_array_header_1_0(
                header, {"descr": "<f4", "fortran_order": False, "shape": shape})
            archive.writestr(f"{name}.npy", header.getvalue())  # the magic string, then the header


def features_error(tmp_path, target) -> str:
    src = write_features(tmp_path / "a.npz", 6, 5, 3, seed=0)
    with pytest.raises(SRDCInputError) as raised:
        load_task(SRDCConfig(dataset="features", source=str(src), target=str(target)))
    assert "\n" not in str(raised.value)
    return str(raised.value)


def test_a_features_file_too_large_for_memory_is_refused_by_its_headers_before_loading(tmp_path):
    headers_only(tmp_path / "huge.npz", features=(10**9, 1024), labels=(10**9,))  # 3.7 TiB declared in 300 bytes
    assert (tmp_path / "huge.npz").stat().st_size < 1000
    error = features_error(tmp_path, tmp_path / "huge.npz")
    assert f"{tmp_path / 'huge.npz'}: its arrays declare 3818.4 GiB, more than the" in error
    assert error.endswith("use fewer samples or dimensions, or a machine with more memory")


def test_a_compressed_npz_bomb_is_refused_by_its_declared_size(tmp_path, monkeypatch):
    monkeypatch.setattr("srdc.data.features.memory_limit", lambda: 16 * 2**20)
    bomb = tmp_path / "bomb.npz"
    np.savez_compressed(bomb, features=np.zeros((2**18, 64), np.float32), labels=np.zeros(2**18, np.int64))
    assert bomb.stat().st_size < 2**20 // 2  # 66 MiB of arrays in under half a MiB
    error = features_error(tmp_path, bomb)
    assert f"{bomb}: its arrays declare 0.1 GiB, more than the 0.0 GiB a features file may take" in error


def test_features_with_more_dimensions_than_the_limit_are_refused_before_loading(tmp_path):
    wide = write_features(tmp_path / "wide.npz", 2, MAX_FEATURE_DIM + 1, 2, seed=0)
    error = features_error(tmp_path, wide)
    assert error.startswith(f"{wide}: 'features' declares {MAX_FEATURE_DIM + 1} dimensions, more than "
                            f"{MAX_FEATURE_DIM}")


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


# -- --feature_norm ---------------------------------------------------------------------------------------------
def _counts(rows: int, dim: int, seed: int) -> np.ndarray:
    """Bag-of-words-like counts, with an all-zero row."""
    counts = np.random.default_rng(seed).poisson(3.0, size=(rows, dim)).astype(np.float32)
    counts[1] = 0.0
    return counts


def test_l2_rows_have_unit_length_and_a_zero_row_stays_zero():
    counts = _counts(20, 6, seed=0)
    normed = normalize_features(counts, "l2")
    lengths = np.linalg.norm(normed, axis=1)
    assert np.allclose(np.delete(lengths, 1), 1.0, atol=1e-6) and lengths[1] == 0.0
    assert np.allclose(normed[5], counts[5] / np.sqrt((counts[5].astype(np.float64) ** 2).sum()), atol=1e-6)


def test_zscore_standardises_each_dimension_and_only_centres_a_constant_one():
    counts = _counts(30, 5, seed=1)
    counts[:, 0] = 7.0
    normed = normalize_features(counts, "zscore")
    assert np.allclose(normed[:, 1:].mean(axis=0), 0.0, atol=1e-6)
    assert np.allclose(normed[:, 1:].std(axis=0), 1.0, atol=1e-5)
    assert np.all(normed[:, 0] == 0.0)  # the constant column, centred and not divided by 0
    assert np.array_equal(normalize_features(counts, "none"), counts)


def test_l1_zscore_is_frequencies_then_zscore():
    counts = _counts(25, 4, seed=2)
    sums = counts.astype(np.float64).sum(axis=1, keepdims=True)
    freqs = counts / np.where(sums > 0, sums, 1.0)
    expected = (freqs - freqs.mean(axis=0)) / freqs.std(axis=0)
    assert np.allclose(normalize_features(counts, "l1_zscore"), expected, atol=1e-5)


def test_each_domain_is_normalised_with_its_own_statistics(tmp_path):
    rng = np.random.default_rng(3)
    np.savez(tmp_path / "a.npz", features=rng.normal(5.0, 2.0, size=(40, 3)).astype(np.float32),
             labels=np.arange(40) % 2)
    np.savez(tmp_path / "b.npz", features=rng.normal(-1.0, 0.5, size=(30, 3)).astype(np.float32),
             labels=np.arange(30) % 2)
    task = load_task(SRDCConfig(dataset="features", source=str(tmp_path / "a.npz"), target=str(tmp_path / "b.npz"),
                                feature_norm="zscore"))
    for domain in (task.source, task.target):
        features = domain.train_set.tensors[0].numpy()
        assert np.allclose(features.mean(axis=0), 0.0, atol=1e-5) and np.allclose(features.std(axis=0), 1.0, atol=1e-4)


def test_inductive_target_statistics_come_from_its_training_half_only(tmp_path):
    rng = np.random.default_rng(4)
    for name, rows in (("a", 24), ("b", 40)):
        np.savez(tmp_path / f"{name}.npz", features=rng.normal(size=(rows, 3)).astype(np.float32) * 3 + 1,
                 labels=np.arange(rows) % 2)
    task = load_task(SRDCConfig(dataset="features", source=str(tmp_path / "a.npz"), target=str(tmp_path / "b.npz"),
                                feature_norm="zscore", setting="inductive"))
    train, test = (domain.train_set.tensors[0].numpy() for domain in (task.target, task.target_test))
    assert np.allclose(train.mean(axis=0), 0.0, atol=1e-5) and np.allclose(train.std(axis=0), 1.0, atol=1e-4)
    assert not np.allclose(test.mean(axis=0), 0.0, atol=1e-2)  # the held-out half was not used to fit


def test_an_unknown_feature_norm_is_one_line():
    with pytest.raises(SRDCInputError, match=r"unknown feature_norm 'l3'; choose one of: none, l2, zscore, l1_zscore"):
        SRDCConfig(feature_norm="l3")
