"""Real data: USPS and MNIST from ``$SRDC_DATA_ROOT`` (default ``../shared/data`` beside the repository)."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import SHARED_DATA

from srdc.config import SRDCConfig
from srdc.data import load_task
from srdc.data.digits import PHOTO_SEED, load_mnist, read_idx
from srdc.data.embedded import photo_patches
from srdc.trainer import Trainer

DATA_ROOT = SHARED_DATA
needs_digits = pytest.mark.skipif(
    not (DATA_ROOT / "digits" / "usps" / "usps.bz2").is_file()
    or not (DATA_ROOT / "digits" / "mnist" / "t10k-images-idx3-ubyte.gz").is_file(),
    reason=f"USPS/MNIST not found under {DATA_ROOT}; set SRDC_DATA_ROOT to a folder with digits/usps, digits/mnist",
)


@needs_digits
def test_digits_load_with_official_counts_and_shapes():
    task = load_task(SRDCConfig(dataset="digits", source="usps", target="mnist", data_root=str(DATA_ROOT)))
    assert len(task.source) == 7291
    assert len(task.target) == 10000  # the official MNIST test split (the train split is not in shared/)
    x, y = task.target.eval_set[0]
    assert x.shape == (3, 28, 28) and -1.0 <= float(x.min()) < float(x.max()) <= 1.0
    assert np.bincount(task.source.labels).tolist()[:3] == [1194, 1005, 731]
    raw = read_idx(DATA_ROOT / "digits" / "mnist" / "t10k-labels-idx1-ubyte.gz")
    assert torch.equal(torch.as_tensor(task.target.labels), torch.from_numpy(raw.astype(np.int64)))


def test_idx_reader_rejects_truncated_files(tmp_path):
    path = tmp_path / "bad-images-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 8, 3]) + (10).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + b"\0" * 100)
    with pytest.raises(ValueError, match="truncated"):
        read_idx(path)


def write_idx(path: Path, array: np.ndarray) -> None:
    """``array`` (uint8) in the IDX format: zero, zero, type 8, the number of dimensions, each size, the values."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(size.to_bytes(4, "big") for size in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_a_missing_mnist_training_split_is_noted_once_a_process(tmp_path, capsys):
    folder = tmp_path / "digits" / "mnist"
    folder.mkdir(parents=True)
    images, labels = np.arange(3 * 28 * 28).reshape(3, 28, 28) % 256, np.array([7, 2, 1])
    write_idx(folder / "t10k-images-idx3-ubyte", images)
    write_idx(folder / "t10k-labels-idx1-ubyte", labels)
    for _ in range(3):  # source and target of one task, then the next trial in the same worker
        loaded_images, loaded_labels = load_mnist(tmp_path)
        assert np.array_equal(loaded_images, images) and loaded_labels.tolist() == [7, 2, 1]
    assert capsys.readouterr().err.count("MNIST training split not found") == 1


@needs_digits
@pytest.mark.slow
@pytest.mark.parametrize("variant, selection, epochs, margin", [
    ("srdc", "acc_labelfree", 3, 10.0),  # SRDC's label-free pick; measured: 91.0 vs 61.5
    ("dann", "acc_last", 3, 5.0),  # measured: 75.6 vs 61.6 at epoch 3 of 6
])
def test_adaptation_beats_source_only_on_usps_to_mnist(variant, selection, epochs, margin):
    """Same seed, same epoch budget: the method's accuracy (at ``selection``) vs the source model's last epoch."""
    common = {"dataset": "digits", "source": "usps", "target": "mnist", "data_root": str(DATA_ROOT),
              "seed": 0, "epochs": epochs, "device": "cpu"}
    task = load_task(SRDCConfig(**common))
    adapted = Trainer(SRDCConfig(variant=variant, **common), task).fit()
    source_only = Trainer(SRDCConfig(variant="source_only", **common), task).fit()
    print(f"{variant} {adapted[selection]:.2f} ({selection}) vs source_only {source_only['acc_last']:.2f} (last)")
    assert adapted[selection] >= source_only["acc_last"] + margin


@needs_digits
def test_mnist_photo_is_mnist_m_by_the_published_recipe_and_deterministic():
    """Ganin et al. 2016: |patch - binarised digit| per channel; same labels as MNIST, same bytes every load."""
    config = SRDCConfig(dataset="digits", source="mnist", target="MM", data_root=str(DATA_ROOT))
    task = load_task(config)
    mnist, photo = task.source.train_set.tensors[0], task.target.train_set.tensors[0]
    assert photo.shape == (10000, 3, 28, 28) and photo.dtype == torch.float32
    assert -1.0 <= float(photo.min()) and float(photo.max()) <= 1.0
    assert np.array_equal(task.target.labels, task.source.labels)
    again = load_task(config).target.train_set.tensors[0]
    assert torch.equal(photo, again)
    # the recipe, checked on the first 100 digits against the photo patches of the same seed
    digits = (read_idx(DATA_ROOT / "digits" / "mnist" / "t10k-images-idx3-ubyte.gz")[:100] > 0).astype(np.float32)
    patches = photo_patches(10000, 28, PHOTO_SEED)[:100]
    expected = np.abs(patches - digits[:, None])
    assert np.allclose(photo[:100].numpy() * 0.5 + 0.5, expected, atol=1e-6)
    # colour: the channels differ (MNIST's three channels are equal)
    assert torch.equal(mnist[:, 0], mnist[:, 1])
    assert float((photo[:, 0] - photo[:, 1]).abs().mean()) > 0.05
    # the digit is still there: |correlation| of each image's grey level with its binarised digit
    grey = photo[:2000].mean(1).flatten(1).numpy()
    binary = (mnist[:2000, 0].flatten(1).numpy() > -1.0).astype(np.float32)
    correlation = [abs(np.corrcoef(binary[i], grey[i])[0, 1]) for i in range(2000)]
    assert np.median(correlation) > 0.8


@needs_digits
def test_mnist_photo_is_a_real_domain_gap_for_a_model_trained_on_mnist():
    """A source model trained on 2,000 MNIST digits (2 epochs) loses most of its accuracy on the same digits as
    mnist_photo."""
    config = SRDCConfig(dataset="digits", source="mnist", target="mnist_photo", data_root=str(DATA_ROOT),
                        variant="source_only", epochs=2, max_samples=2000, device="cpu")
    trainer = Trainer(config)
    trainer.fit()
    last = trainer.history[-1]
    print(f"source-only after 2 epochs: mnist {last['acc_source']:.1f}, mnist_photo {last['acc_target']:.1f}")
    assert last["acc_source"] > 90.0
    assert last["acc_target"] < last["acc_source"] - 30.0


@needs_digits
def test_the_dry_run_of_the_digits_study_tells_the_sizes_from_the_files_headers_without_loading(monkeypatch, capsys):
    from study_helpers import load_declaration

    from srdc.data import DATASETS, DomainFacts, describe_domain
    from srdc.harness.main import main

    def never_loaded(domain, config):
        raise AssertionError(f"{domain} was loaded")

    monkeypatch.setitem(DATASETS, "digits", dataclasses.replace(DATASETS.lookup("digits"), load_domain=never_loaded))
    config = SRDCConfig(dataset="digits", data_root=str(DATA_ROOT))
    assert [describe_domain("digits", name, config) for name in ("U", "M", "MM")] == [
        DomainFacts(7291, 10, side=28), DomainFacts(10000, 10, side=28), DomainFacts(10000, 10, side=28)]
    assert main(load_declaration("benchmark_digits"), ["--dry-run", "--data-root", str(DATA_ROOT)]) == 0
    assert "| usps->mnist | srdc | 3 | 156x2 |" in capsys.readouterr().out
