"""Datasets: the registry behind ``--dataset``, :func:`load_task`, which builds a run's source/target data,
:func:`load_one_domain`, which loads one domain alone (``srdc-data split``, feature extraction), and
:func:`describe_domain` and :func:`check_task`, which tell a domain's size and check a run's data without loading
it where the dataset can (a study's check before launch, ``--dry-run``). A dataset's module is imported on the
dataset's first use (:data:`srdc.data.base.DATASETS`)."""

from __future__ import annotations

import dataclasses

import numpy as np

from srdc.config import SRDCConfig
from srdc.data.base import (
    DATASETS,
    BackboneChoice,
    DatasetSpec,
    Domain,
    DomainFacts,
    TaskData,
    check_same_classes,
    check_same_label_space,
    domain_facts,
)
from srdc.data.release_splits import check_release_lists, inductive_split, release_train_mask
from srdc.data.splits import kept_rows, stratified_split

__all__ = ["DATASETS", "BackboneChoice", "DatasetSpec", "Domain", "DomainFacts", "TaskData", "backbone_choice",
           "check_task", "describe_domain", "load_one_domain", "load_task"]


def backbone_choice(config: SRDCConfig) -> BackboneChoice:
    """The backbone ``config``'s run uses and why (:meth:`DatasetSpec.backbone`), found without decoding an image."""
    return DATASETS.lookup(config.dataset).backbone(config)


def load_one_domain(dataset: str, domain: str, config: SRDCConfig) -> Domain:
    """One whole domain of a registered dataset (for user datasets, ``domain`` is the path)."""
    spec = DATASETS.lookup(dataset)
    return spec.load_domain(spec.resolve_domain(domain), config)


def load_task(config: SRDCConfig) -> TaskData:
    """Load source and target for ``config``; in the inductive setting split the target in two halves (the
    release's lists or a seeded stratified 50/50 split: ``--inductive_split``, :mod:`srdc.data.release_splits`); with
    ``source_val_fraction`` hold that share of each source class out of training (``source_val``).

    Unknown dataset or domain, missing files and label-space mismatches raise ``SRDCInputError``.
    """
    spec = DATASETS.lookup(config.dataset)
    source = spec.load_domain(spec.resolve_domain(config.source), config)
    target = spec.load_domain(spec.resolve_domain(config.target), config)
    check_same_label_space(source, target)
    in_release_train_half = None
    if config.setting == "inductive" and inductive_split(config) == "release":
        in_release_train_half = release_train_mask(config, spec.resolve_domain(config.target))
    if config.max_samples is not None:
        source = source.subset(kept_rows(source.labels, config.max_samples, config.split_seed))
        target_rows = kept_rows(target.labels, config.max_samples, config.split_seed)
        target = target.subset(target_rows)
        if in_release_train_half is not None:
            in_release_train_half = in_release_train_half[target_rows]
    source_val = None
    if config.source_val_fraction > 0:
        train_idx, val_idx = stratified_split(source.labels, config.split_seed, 1.0 - config.source_val_fraction)
        source, source_val = source.subset(train_idx, f"{source.name}/train"), source.subset(
            val_idx, f"{source.name}/val")
    target_test = None
    if config.setting == "inductive":
        train_idx, test_idx = stratified_split(target.labels, config.split_seed) if in_release_train_half is None \
            else (np.flatnonzero(in_release_train_half), np.flatnonzero(~in_release_train_half))
        target, target_test = target.subset(train_idx, f"{target.name}/train"), target.subset(
            test_idx, f"{target.name}/test"
        )
    auto = spec.backbone(dataclasses.replace(config, backbone="auto"))
    return TaskData(source=source, target=target, target_test=target_test, default_backbone=auto.name,
                    backbone_reason=auto.reason, source_val=source_val)


def describe_domain(dataset: str, domain: str, config: SRDCConfig) -> DomainFacts:
    """The size of one domain of ``config``'s run: from its files or metadata where the dataset can tell
    (:attr:`DatasetSpec.describe_domain`), else from the domain loaded (without the decoded-image cache)."""
    spec = DATASETS.lookup(dataset)
    name = spec.resolve_domain(domain)
    if spec.describe_domain is not None:
        return spec.describe_domain(name, config)
    return domain_facts(spec.load_domain(name, dataclasses.replace(config, image_cache="off")))


def check_task(config: SRDCConfig) -> None:
    """What :func:`load_task` would fail on, checked as cheaply as the dataset allows (:func:`describe_domain`):
    an unknown dataset or domain, missing files, a class-count mismatch, an empty domain, the release's half lists
    missing where the run uses them."""
    source = describe_domain(config.dataset, config.source, config)
    target = describe_domain(config.dataset, config.target, config)
    check_same_classes(config.source, source, config.target, target)
    if config.setting == "inductive" and inductive_split(config) == "release":
        check_release_lists(config, DATASETS.lookup(config.dataset).resolve_domain(config.target))
