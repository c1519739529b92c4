"""Real data: USPS and MNIST from ``$SRDC_DATA_ROOT`` (default ``../shared/data`` beside the repository)."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from srdc.config import SRDCConfig
from srdc.data import load_task
from srdc.data.digits import read_idx
from srdc.trainer import Trainer

DATA_ROOT = Path(os.environ.get("SRDC_DATA_ROOT", Path(__file__).resolve().parents[2] / "shared" / "data"))
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


@needs_digits
@pytest.mark.slow
def test_srdc_labelfree_beats_source_only_by_10_points_on_usps_to_mnist():
    """Same seed, same epoch budget: SRDC's label-free-selected accuracy vs source-only's last epoch."""
    common = {"dataset": "digits", "source": "usps", "target": "mnist", "data_root": str(DATA_ROOT),
              "seed": 0, "epochs": 6, "device": "cpu"}
    task = load_task(SRDCConfig(**common))
    srdc = Trainer(SRDCConfig(variant="srdc", **common), task).fit()
    source_only = Trainer(SRDCConfig(variant="source_only", **common), task).fit()
    print(f"srdc {srdc['acc_labelfree']:.2f} (labelfree) vs source_only {source_only['acc_last']:.2f} (last)")
    assert srdc["acc_labelfree"] >= source_only["acc_last"] + 10.0
