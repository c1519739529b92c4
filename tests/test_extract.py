"""Feature extraction (``srdc.extract``, ``srdc-data extract-features``): batched backbone features in the format
``--dataset features`` reads."""

import numpy as np
import torch
from data_helpers import TINY_CLASSES, make_class_folders

from srdc.config import SRDCConfig
from srdc.data import load_one_domain, load_task
from srdc.data.cli import main
from srdc.extract import ExtractionRequest, extract_features, run_extraction
from srdc.model import build_backbone


def test_extracted_file_has_the_format_and_loads_as_a_features_pair(tmp_path, capsys):
    make_class_folders(tmp_path / "src", TINY_CLASSES, (2, 3, 2))
    make_class_folders(tmp_path / "tgt", TINY_CLASSES, (1, 1, 2))
    for name in ("src", "tgt"):
        assert main(["extract-features", "--dataset", "folder", "--domain", str(tmp_path / name),
                     "--backbone", "resnet18", "--weights", "none", "--image-size", "32", "--batch-size", "3",
                     "--device", "cpu", "--out", str(tmp_path / f"{name}.npz"), "--quiet"]) == 0
    assert f"wrote {tmp_path / 'tgt.npz'}" in capsys.readouterr().out

    with np.load(tmp_path / "src.npz") as data:
        assert data["features"].shape == (7, 512) and data["features"].dtype == np.float32
        assert np.isfinite(data["features"]).all() and data["features"].std() > 0
        assert data["labels"].tolist() == [0, 0, 1, 1, 1, 2, 2] and data["labels"].dtype == np.int64
        assert data["classes"].tolist() == list(TINY_CLASSES)
        assert str(data["backbone"]) == "resnet18" and str(data["weights"]) == "none"
        assert data["paths"][2].endswith("Table/img 0.jpg")

    pair = load_task(SRDCConfig(dataset="features", source=str(tmp_path / "src.npz"),
                                target=str(tmp_path / "tgt.npz")))
    assert pair.classes == list(TINY_CLASSES) and pair.default_backbone == "identity"
    assert pair.source.train_set.tensors[0].shape == (7, 512)
    assert pair.target.labels.tolist() == [0, 1, 2, 2]


def test_batched_extraction_equals_one_pass_over_the_eval_view(tmp_path):
    make_class_folders(tmp_path / "dom", TINY_CLASSES, (2, 2, 1))
    task = load_task(SRDCConfig(dataset="folder", source=str(tmp_path / "dom"), target=str(tmp_path / "dom"),
                                image_size=32))
    torch.manual_seed(0)
    backbone, _ = build_backbone("resnet18", "none")
    batched = extract_features(task.source, backbone, batch_size=2, device=torch.device("cpu"), progress=False)
    with torch.no_grad():
        images = torch.stack([task.source.eval_set[i][0] for i in range(5)])
        whole = backbone.eval()(images).numpy()
    assert batched.shape == (5, 512)
    np.testing.assert_allclose(batched, whole, rtol=1e-4, atol=1e-5)


def test_in_memory_domain_through_identity_gives_its_inputs_without_paths(tmp_path):
    out = tmp_path / "nested" / "digits.npz"
    request = ExtractionRequest(dataset="embedded", domain="digits", root=str(tmp_path), out=out,
                                backbone="identity", weights="none", batch_size=100, device="cpu", image_size=8)
    assert run_extraction(request, progress=False) == out
    domain = load_one_domain("embedded", "digits", SRDCConfig(dataset="embedded", image_size=8))
    inputs, labels = domain.eval_set.tensors
    with np.load(out) as data:
        assert "paths" not in data.files and not (tmp_path / "nested" / "digits.npz.tmp").exists()
        assert data["features"].shape == (len(domain), 3 * 8 * 8)
        np.testing.assert_array_equal(data["features"], inputs.flatten(1).numpy())
        np.testing.assert_array_equal(data["labels"], labels.numpy())
        assert data["classes"].tolist() == [str(d) for d in range(10)] and str(data["backbone"]) == "identity"
