"""The dataset interface every dataset module implements, and the registry that ``--dataset`` looks up.

Torch is imported by the functions that build tensors, so that listing the datasets (``--help``, ``srdc-data``)
needs none."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from srdc.base import Registry
from srdc.errors import SRDCInputError

if TYPE_CHECKING:
    import torch
    from torch.utils.data import Dataset

    from srdc.config import SRDCConfig


def one_line(error: BaseException) -> str:
    """An exception's message with its line breaks folded, for one-line error messages."""
    return " ".join(str(error).split())


@dataclass
class Domain:
    """The samples of one domain (or one split of it).

    ``train_set`` and ``eval_set`` hold the same samples in the same order and differ only in their transform
    (train: random crop + flip; eval: centre crop). Items are ``(input, label)``. In-memory domains
    (digits, embedded, features) use one ``TensorDataset`` for both and are indexed directly, without a
    ``DataLoader``.
    """

    name: str
    classes: list[str]
    labels: np.ndarray
    train_set: Dataset
    eval_set: Dataset
    transform: str = "in memory, prepared when loaded"  # what the views apply (srdc.data.images.TransformProfile)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_memory(self) -> bool:
        from torch.utils.data import TensorDataset

        return isinstance(self.train_set, TensorDataset)

    def subset(self, indices: np.ndarray, name: str | None = None) -> Domain:
        """The samples at ``indices`` (used by the inductive split and ``max_samples``)."""
        indices = np.asarray(indices, dtype=np.int64)
        return Domain(
            name=name or self.name,
            classes=self.classes,
            labels=self.labels[indices],
            train_set=_subset(self.train_set, indices),
            eval_set=_subset(self.eval_set, indices),
            transform=self.transform,
        )


@dataclass(frozen=True)
class DomainFacts:
    """What a domain holds, known without loading its tensors (``--dry-run`` and the check before a study launches):
    its images (samples) and classes; ``in_memory``: held as one tensor (digits, embedded, features), whose inputs
    have the side ``side`` (``None``: feature vectors), else image files read through the transform profile."""

    images: int
    classes: int
    in_memory: bool = True
    side: int | None = None


def domain_facts(domain: Domain) -> DomainFacts:
    """The facts of a loaded domain (a dataset that cannot tell them without loading)."""
    if not domain.in_memory:
        return DomainFacts(len(domain), domain.num_classes, in_memory=False)
    inputs = domain.train_set.tensors[0]
    return DomainFacts(len(domain), domain.num_classes, side=int(inputs.shape[-1]) if inputs.ndim == 4 else None)


def tensor_domain(name: str, classes: list[str], inputs: torch.Tensor, labels: torch.Tensor) -> Domain:
    """An in-memory domain: ``inputs`` N x ... float tensor, ``labels`` N int64 tensor."""
    import torch
    from torch.utils.data import TensorDataset

    labels = labels.to(torch.int64)
    dataset = TensorDataset(inputs, labels)
    return Domain(name=name, classes=classes, labels=labels.numpy(), train_set=dataset, eval_set=dataset)


def _subset(dataset: Dataset, indices: np.ndarray) -> Dataset:
    import torch
    from torch.utils.data import TensorDataset

    if isinstance(dataset, TensorDataset):
        index = torch.from_numpy(indices)
        return TensorDataset(*(t[index] for t in dataset.tensors))
    return torch.utils.data.Subset(dataset, indices.tolist())


@dataclass
class TaskData:
    """What one run trains and evaluates on.

    ``target`` is the unlabelled target training set (its labels are used only to evaluate). In the
    inductive setting ``target_test`` holds the held-out half of the target domain; in the transductive
    setting it is ``None`` and the target training set is also the evaluation set (paper protocol).
    ``default_backbone`` is what ``backbone="auto"`` resolves to for this data, ``backbone_reason`` why.
    ``source_val`` (with ``source_val_fraction``) holds the source samples kept out of training for the validators.
    """

    source: Domain
    target: Domain
    target_test: Domain | None
    default_backbone: str
    backbone_reason: str = ""
    source_val: Domain | None = None

    @property
    def num_classes(self) -> int:
        return self.source.num_classes

    @property
    def classes(self) -> list[str]:
        return self.source.classes


@dataclass(frozen=True)
class BackboneChoice:
    """The backbone a run uses and why, in words for its first line (``--backbone``, the dataset's default, or
    the size of your images)."""

    name: str
    reason: str


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset.

    ``load_domain(domain, config) -> Domain`` loads one whole domain; ``describe_domain(domain, config) ->
    DomainFacts`` tells its size from its files or metadata, checking what it can without loading (files present,
    classes, counts), each problem an ``SRDCInputError`` as loading would raise (``None``: the dataset cannot; its
    domains are loaded to tell); ``domains`` lists the accepted names
    (empty for user data, where a domain is a path); ``aliases`` maps short names (``A``) to domain names
    (``amazon``); ``default_backbone`` is used when the config asks for ``backbone="auto"``, unless
    ``auto_backbone(config)`` chooses from the data itself (your own images: by their size).
    """

    name: str
    load_domain: Callable[..., Domain]
    domains: tuple[str, ...] = ()
    aliases: dict[str, str] | None = None
    default_backbone: str = "resnet50"
    description: str = ""
    describe_domain: Callable[..., DomainFacts] | None = None
    auto_backbone: Callable[[SRDCConfig], BackboneChoice] | None = None

    def backbone(self, config: SRDCConfig) -> BackboneChoice:
        """The backbone of ``config``'s run on this dataset: ``--backbone``, else what ``auto`` resolves to."""
        if config.backbone != "auto":
            return BackboneChoice(config.backbone, "--backbone")
        if self.auto_backbone is not None:
            return self.auto_backbone(config)
        return BackboneChoice(self.default_backbone, f"auto: the {self.name} dataset's default")

    def resolve_domain(self, domain: str) -> str:
        """The canonical domain name for ``domain`` (a name, an alias such as ``A``, or a user path)."""
        if not self.domains:
            return domain
        aliases = self.aliases or {}
        canonical = aliases.get(domain, domain)
        if canonical not in self.domains:
            known = ", ".join(list(self.domains) + [f"{k} (= {v})" for k, v in aliases.items()])
            raise SRDCInputError(f"unknown domain {domain!r} for dataset {self.name!r}; known domains: {known}")
        return canonical


# every dataset's name -> the module that registers it, imported on the dataset's first use (a run on the embedded
# digits never imports the image datasets' modules); a new dataset module adds its names here
DATASETS: Registry[DatasetSpec] = Registry("dataset", {
    "office31": "srdc.data.benchmarks",
    "imageclef": "srdc.data.benchmarks",
    "officehome": "srdc.data.benchmarks",
    "digits": "srdc.data.digits",
    "embedded": "srdc.data.embedded",
    "features": "srdc.data.features",
    "imagelist": "srdc.data.user",
    "folder": "srdc.data.user",
})


def register(spec: DatasetSpec) -> DatasetSpec:
    DATASETS[spec.name] = spec
    return spec


def check_same_classes(source: str, source_facts: DomainFacts, target: str, target_facts: DomainFacts) -> None:
    """Source and target must have the same class count and samples."""
    if source_facts.classes != target_facts.classes:
        raise SRDCInputError(
            f"class-count mismatch: source {source!r} has {source_facts.classes} classes, target "
            f"{target!r} has {target_facts.classes}; UDA needs one shared label space"
        )
    for name, facts in ((source, source_facts), (target, target_facts)):
        if facts.images == 0:
            raise SRDCInputError(f"domain {name!r} has no samples")


def check_same_label_space(source: Domain, target: Domain) -> None:
    """Source and target must share the label space (same class count, labels in range)."""
    check_same_classes(source.name, DomainFacts(len(source), source.num_classes), target.name,
                       DomainFacts(len(target), target.num_classes))
    for domain in (source, target):
        low, high = int(domain.labels.min()), int(domain.labels.max())
        if low < 0 or high >= domain.num_classes:
            raise SRDCInputError(
                f"labels of {domain.name!r} range over [{low}, {high}] but there are {domain.num_classes} classes"
            )
