"""Feature extraction: run a backbone over one domain and save what ``--dataset features`` reads.

A layer above :mod:`srdc.model` (it builds backbones), used by ``srdc-data extract-features`` and by studies
that extract their features first. The output ``.npz`` holds ``features`` (N x d float32, the backbone's
pooled output on the evaluation view: resize + centre crop), ``labels`` (N int64), ``classes`` (K names),
``paths`` (N source files, for image domains), and ``backbone`` / ``weights`` (how it was made).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from srdc.base import bar_disabled, resolve_device
from srdc.config import SRDCConfig
from srdc.data import load_one_domain
from srdc.data.base import Domain
from srdc.model import build_backbone


@dataclass
class ExtractionRequest:
    """What to extract: one ``domain`` of ``dataset`` (under ``root``) through ``backbone`` with ``weights``."""

    dataset: str
    domain: str
    root: str
    out: Path
    backbone: str = "resnet50"
    weights: str = "imagenet"
    batch_size: int = 64
    device: str = "auto"
    image_size: int | None = None
    num_workers: int = 0
    path_prefix: str | None = None


@torch.no_grad()
def extract_features(domain: Domain, backbone: nn.Module, batch_size: int, device: torch.device,
                     num_workers: int = 0, progress: bool = True) -> np.ndarray:
    """N x d float32 features of ``domain``'s evaluation view, in sample order."""
    backbone = backbone.to(device).eval()
    loader = DataLoader(domain.eval_set, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=device.type == "cuda")
    outputs = []
    for inputs, _ in tqdm(loader, desc=f"features of {domain.name}", unit="batch", disable=bar_disabled(progress)):
        outputs.append(backbone(inputs.to(device, non_blocking=True)).flatten(1).float().cpu())
    return torch.cat(outputs).numpy()


def save_features(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` (``.npz``) atomically: temporary file + rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:
        np.savez(handle, **arrays)
    os.replace(tmp, path)


def feature_arrays(domain: Domain, features: np.ndarray, request: ExtractionRequest) -> dict[str, np.ndarray]:
    """The arrays of the ``.npz`` file (module docstring); ``paths`` only for domains read from image files."""
    arrays = {
        "features": features,
        "labels": domain.labels.astype(np.int64),
        "classes": np.array(domain.classes),
        "backbone": np.array(request.backbone),
        "weights": np.array(request.weights),
    }
    samples = getattr(domain.eval_set, "samples", None)
    if samples is not None:
        arrays["paths"] = np.array([str(path) for path, _ in samples])
    return arrays


def run_extraction(request: ExtractionRequest, progress: bool = True) -> Path:
    """Load the domain, build the backbone (``srdc.model.build_backbone``), extract and save; returns the path."""
    # one pass over the images: a decoded-image cache would only add a copy of them
    config = SRDCConfig(dataset=request.dataset, source=request.domain, target=request.domain,
                        data_root=request.root, image_size=request.image_size, path_prefix=request.path_prefix,
                        image_cache="off")
    domain = load_one_domain(request.dataset, request.domain, config)
    device = resolve_device(request.device)
    in_dim = int(domain.eval_set[0][0].numel())
    backbone, _ = build_backbone(request.backbone, request.weights, in_dim=in_dim)
    features = extract_features(domain, backbone, request.batch_size, device, request.num_workers, progress)
    save_features(request.out, feature_arrays(domain, features, request))
    return request.out
