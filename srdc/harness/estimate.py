"""What a run and a trial cost, in seconds, from the per-epoch cost table (:mod:`srdc.harness.costs`); what
``--dry-run`` (:mod:`srdc.harness.dryrun`) plans with:

* a run's time: over its epochs, the iterations the method draws (:meth:`srdc.methods.Draw.epoch_iterations`, what
  the trainer runs: one pass over the larger drawn domain, or the draw's own count) times the cost of an iteration
  of one or two batches, plus ``epochs + 1`` preparation passes over source, target (and the inductive target test
  half);
* a trial's time: the sum of its runs' (a search trial trains its runs in lockstep, one after the other in each
  epoch); with a fraction g < 1 of a GPU, 1/g as long (the figures are measured with one trial alone on its
  GPU, on in-memory data: trials sharing a GPU share its time).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from srdc.config import SRDCConfig
from srdc.data import DATASETS, DomainFacts, describe_domain
from srdc.data.benchmarks import BENCHMARKS
from srdc.data.release_splits import inductive_split, release_half_sizes
from srdc.harness.costs import COSTS_FILE, CPU, CostKey, CostRow, dtype_name, find_row, input_size, measure_command
from srdc.methods import METHODS

TABLE_NAME = "/".join(COSTS_FILE.parts[-3:])  # srdc/harness/epoch_costs.json


@dataclass(frozen=True)
class RunData:
    """The sizes a run's cost depends on: images per domain, classes, backbone, the input side."""

    source: int
    target: int
    target_test: int
    classes: int
    backbone: str
    image_size: int | None

    @property
    def prepared_images(self) -> int:
        """The images of one preparation pass."""
        return self.source + self.target + self.target_test


@dataclass(frozen=True)
class Segment:
    """Consecutive epochs with the same draw: ``iterations`` of ``batches`` mini-batches each."""

    epochs: int
    iterations: int
    batches: int


class DataFacts:
    """Domain sizes and classes: a benchmark's registered image counts (no data needed), any other dataset's as
    it tells them (:func:`srdc.data.describe_domain`: from files and metadata, loading only a dataset that cannot),
    each domain once."""

    def __init__(self) -> None:
        self.known: dict[tuple[Any, ...], DomainFacts] = {}

    def domain(self, config: SRDCConfig, name: str) -> DomainFacts:
        """The facts of domain ``name`` of ``config``'s dataset."""
        bench = BENCHMARKS.get(config.dataset)
        if bench is not None and bench.domain(name).count is not None:
            return DomainFacts(bench.domain(name).count, len(bench.classes), in_memory=False)
        key = (config.dataset, name, config.data_root, config.image_size)
        if key not in self.known:
            self.known[key] = describe_domain(config.dataset, name, config)
        return self.known[key]

    def run(self, config: SRDCConfig) -> RunData:
        """What ``config``'s run trains and prepares on (``max_samples`` and the inductive split applied as counts:
        the release's list sizes, or 50/50, within a few images of the stratified split)."""
        facts = self.domain(config, config.source)
        source, classes, target = facts.images, facts.classes, self.domain(config, config.target).images
        if config.max_samples is not None:
            source, target = min(source, config.max_samples), min(target, config.max_samples)
        test = 0
        if config.setting == "inductive" and config.max_samples is None and inductive_split(config) == "release":
            target, test = release_half_sizes(config, DATASETS.lookup(config.dataset).resolve_domain(config.target))
        elif config.setting == "inductive":
            target, test = round(target / 2), target - round(target / 2)
        spec = DATASETS.lookup(config.dataset)
        backbone = spec.backbone(config).name
        return RunData(source, target, test, classes, backbone, input_size(config, backbone, facts))


def schedule(config: SRDCConfig, data: RunData) -> list[Segment]:
    """The run's epochs as segments of equal draws, from the method's own :meth:`~srdc.methods.Method.draw` and
    :meth:`~srdc.methods.Draw.epoch_iterations`."""
    method = METHODS.lookup(config.variant)(config, data.classes, {}, torch.device("cpu"))
    segments: list[Segment] = []
    for epoch in range(config.epochs):
        draw = method.draw(epoch)
        iterations = draw.epoch_iterations(data.source, data.target, config.batch_size)
        if segments and (segments[-1].iterations, segments[-1].batches) == (iterations, draw.batches):
            segments[-1] = Segment(segments[-1].epochs + 1, iterations, draw.batches)
        else:
            segments.append(Segment(1, iterations, draw.batches))
    return segments


def run_seconds(config: SRDCConfig, data: RunData, segments: list[Segment], row: CostRow) -> float:
    """The run's training iterations and its ``epochs + 1`` preparation passes, in seconds."""
    train = sum(segment.epochs * segment.iterations * row.iteration_s(segment.batches) for segment in segments)
    return train + (config.epochs + 1) * data.prepared_images * row.prepare_s_per_image


def segments_text(segments: list[Segment]) -> str:
    """``44x2`` (44 iterations of 2 batches every epoch) or ``7x1 (20 ep), 44x2 (180 ep)``."""
    if len(segments) == 1:
        return f"{segments[0].iterations}x{segments[0].batches}"
    return ", ".join(f"{s.iterations}x{s.batches} ({s.epochs} ep)" for s in segments)


@dataclass
class Pricing:
    """What pricing a sweep's trials drew on: the cost rows used, notes on how they were chosen, and a line
    for each row the table lacks (naming the command that measures it)."""

    rows: list[CostRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TrialCost:
    """A trial's draws (its runs' :func:`segments_text`) and its time (``None``: no cost row)."""

    iterations: str
    seconds: float | None


class Estimator:
    """Prices trials against the cost table for a cluster whose GPUs are ``gpu_name`` (``None``: not known)."""

    def __init__(self, rows: list[CostRow], gpu_name: str | None) -> None:
        self.rows = rows
        self.gpu_name = gpu_name
        self.facts = DataFacts()

    def trial(self, configs: list[SRDCConfig], gpus: float, pricing: Pricing) -> TrialCost:
        """One trial of ``configs`` (its runs) on ``gpus`` GPUs; the rows used and the missing ones go to
        ``pricing``."""
        seconds: float | None = 0.0
        texts = []
        for config in configs:
            data = self.facts.run(config)
            segments = schedule(config, data)
            texts.append(segments_text(segments))
            row = self.row(config, data, gpus > 0, pricing)
            seconds = None if row is None or seconds is None else seconds + run_seconds(config, data, segments, row)
        if seconds is not None and gpus > 0:
            seconds /= min(gpus, 1.0)
        return TrialCost(" / ".join(dict.fromkeys(texts)), seconds)

    def row(self, config: SRDCConfig, data: RunData, gpu: bool, pricing: Pricing) -> CostRow | None:
        device = (self.gpu_name or "gpu") if gpu else CPU
        key = CostKey(data.backbone, data.image_size, config.batch_size,
                      dtype_name(config.uses_bf16(gpu), config.uses_channels_last(gpu), gpu), device)
        row, note = find_row(self.rows, key)
        if row is None:
            missing = (f"{TABLE_NAME} has no row for {key.describe()}; measure it"
                       f"{' on such a GPU' if gpu else ''}: {measure_command(key)}")
            if missing not in pricing.missing:
                pricing.missing.append(missing)
            return None
        if row not in pricing.rows:
            pricing.rows.append(row)
        if note and note not in pricing.notes:
            pricing.notes.append(note)
        return row
