"""The network of SRDC: a backbone phi, the head of Appendix A item 7, and the learnable centres mu (eq. 4).

* backbone: torchvision ResNet-18/34/50/101 (ImageNet weights when the user has them), a small CNN for
  digits, or the identity for pre-extracted features; it maps inputs to pooled features (2048-d for ResNet-50).
* head: bottleneck ``Linear(d, 512) + BatchNorm1d + ReLU``, then classifier ``Linear(512, K)``.
* centres: one K x d set of learnable cluster centres per feature space used (pooled, bottleneck; App. A item 8).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from srdc.errors import SRDCInputError

RESNETS = {
    "resnet18": ("resnet18", "ResNet18_Weights"),
    "resnet34": ("resnet34", "ResNet34_Weights"),
    "resnet50": ("resnet50", "ResNet50_Weights"),
    "resnet101": ("resnet101", "ResNet101_Weights"),
}
BACKBONES = (*RESNETS, "digits_cnn", "identity")


class Outputs(NamedTuple):
    pooled: torch.Tensor
    bottleneck: torch.Tensor
    logits: torch.Tensor


@dataclass(frozen=True)
class Features:
    """The network's view of a whole domain (rows in index order): features per space, logits, labels."""

    spaces: dict[str, torch.Tensor]
    logits: torch.Tensor
    labels: torch.Tensor


class DigitsCNN(nn.Module):
    """LeNet-style CNN for 28x28 digit images (as in ADDA/CyCADA digit experiments): 800-d pooled features."""

    out_dim = 800

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 20, 5),
            nn.BatchNorm2d(20),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(20, 50, 5),
            nn.BatchNorm2d(50),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


BATCHNORMS = (nn.modules.batchnorm._BatchNorm,)  # every BatchNorm, the synchronised ones included (srdc.parallel)
BATCHNORM_STATE = ("running_mean", "running_var", "num_batches_tracked")


@contextmanager
def batchnorm_statistics_of(model: nn.Module, batches: Iterable[torch.Tensor]) -> Iterator[None]:
    """Within the block ``model`` is in evaluation mode and its BatchNorm layers normalise with the mean and variance
    of their inputs over ``batches`` (one pass without gradients, each batch of two or more samples counting once),
    not with their running statistics, which are put back after (AdaBN: Li et al., "Adaptive Batch Normalization
    for practical domain adaptation", Pattern Recognition 2018)."""
    norms = [module for module in model.modules() if isinstance(module, BATCHNORMS)]
    saved = [({key: getattr(norm, key).clone() for key in BATCHNORM_STATE}, norm.momentum) for norm in norms]
    training = model.training
    try:
        model.eval()
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # a cumulative average over the batches
            norm.train()
        with torch.no_grad():
            for inputs in batches:
                if len(inputs) > 1:
                    model(inputs)
        model.eval()
        yield
    finally:
        for norm, (state, momentum) in zip(norms, saved, strict=True):
            for key, value in state.items():
                getattr(norm, key).copy_(value)
            norm.momentum = momentum
        model.train(training)


def torch_hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def resolve_resnet_weights(name: str, weights: str) -> Path | None:
    """Where the ImageNet weights of ``name`` come from: ``weights`` is ``imagenet`` (the torch hub cache),
    ``none`` (train from scratch) or a file path. Offline without the file: one error naming both options.
    """
    if weights == "none":
        return None
    if weights != "imagenet":
        path = Path(weights).expanduser()
        if not path.is_file():
            raise SRDCInputError(f"weights file {path} does not exist; pass an existing .pth file or --weights none")
        return path
    import torchvision  # here, not at the top: a run without a ResNet needs no torchvision (its import costs seconds)

    weight_enum = getattr(torchvision.models, RESNETS[name][1]).IMAGENET1K_V1
    filename = os.path.basename(weight_enum.url)
    cached = torch_hub_checkpoint_dir() / filename
    if cached.is_file():
        return cached
    try:
        torch.hub.load_state_dict_from_url(weight_enum.url, progress=True)
    except Exception as error:  # offline: say where the file goes, and how to run without it
        raise SRDCInputError(
            f"ImageNet weights for {name} are not available offline ({error.__class__.__name__}). Either place "
            f"{filename} (from {weight_enum.url}) at {cached}, or pass --weights /path/to/{filename}, "
            f"or train from scratch with --weights none"
        ) from None
    return cached


def check_weights(name: str, weights: str) -> None:
    """Find backbone ``name``'s initial weights now (the ImageNet file from the torch hub cache, else downloaded, or
    ``weights``' file): no network or a missing file is one error before any data is prepared. Only the ResNets
    take weights; the digits CNN and the identity start from scratch whatever ``weights`` says."""
    if name in RESNETS:
        resolve_resnet_weights(name, weights)


def build_backbone(name: str, weights: str = "imagenet", in_dim: int | None = None) -> tuple[nn.Module, int]:
    """The feature extractor phi and its output dimension d. ``in_dim`` is needed for ``identity`` only."""
    if name in RESNETS:
        import torchvision

        net = getattr(torchvision.models, RESNETS[name][0])(weights=None)
        path = resolve_resnet_weights(name, weights)
        if path is not None:
            net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        dim = net.fc.in_features
        net.fc = nn.Identity()
        return net, dim
    if name == "digits_cnn":
        return DigitsCNN(), DigitsCNN.out_dim
    if name == "identity":
        if in_dim is None:
            raise SRDCInputError("backbone 'identity' needs the feature dimension of the inputs")
        return nn.Identity(), in_dim
    raise SRDCInputError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}")


def is_pretrained(name: str, weights: str) -> bool:
    return name in RESNETS and weights != "none"


class SRDCNet(nn.Module):
    """phi (backbone) + bottleneck + classifier; ``forward`` returns pooled, bottleneck and logits. ``bn_init``:
    the bottleneck BatchNorm's initial scale, ``ones`` or ``uniform`` (U(0, 1), PyTorch <= 1.1's)."""

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int, bottleneck_dim: int = 512,
                 bn_init: str = "ones") -> None:
        super().__init__()
        self.backbone = backbone
        linear, norm = nn.Linear(feature_dim, bottleneck_dim), nn.BatchNorm1d(bottleneck_dim)
        if bn_init == "uniform":  # PyTorch <= 1.1's BatchNorm init, drawn where its constructor drew it
            nn.init.uniform_(norm.weight)
        self.bottleneck = nn.Sequential(linear, norm, nn.ReLU(inplace=True))
        self.classifier = nn.Linear(bottleneck_dim, num_classes)
        self.feature_dim = feature_dim

    def forward(self, x: torch.Tensor) -> Outputs:
        pooled = self.backbone(x).flatten(1)
        bottleneck = self.bottleneck(pooled)
        return Outputs(pooled, bottleneck, self.classifier(bottleneck))

    def new_layers(self) -> list[nn.Parameter]:
        return [*self.bottleneck.parameters(), *self.classifier.parameters()]


class Centres(nn.Module):
    """The learnable cluster centres mu of eqs. (4)/(9), one K x d parameter per feature space used."""

    def __init__(self, spaces: dict[str, int], num_classes: int) -> None:
        super().__init__()
        self.mu = nn.ParameterDict(
            {space: nn.Parameter(torch.zeros(num_classes, dim)) for space, dim in spaces.items()}
        )

    @property
    def spaces(self) -> list[str]:
        return list(self.mu.keys())

    @torch.no_grad()
    def reset(self, values: dict[str, torch.Tensor]) -> None:
        """Overwrite mu with new values (start of each epoch); the optimizer's momentum buffers are kept."""
        for space, value in values.items():
            self.mu[space].copy_(value)


def feature_space_dims(feature_spaces: str, pooled_dim: int, bottleneck_dim: int) -> dict[str, int]:
    """``both`` | ``pooled`` | ``bottleneck`` -> {space: dimension}."""
    dims = {"pooled": pooled_dim, "bottleneck": bottleneck_dim}
    return dims if feature_spaces == "both" else {feature_spaces: dims[feature_spaces]}
