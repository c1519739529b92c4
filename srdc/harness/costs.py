"""The per-epoch cost table that ``--dry-run`` plans with (:mod:`srdc.harness.dryrun`): what one training
iteration and the preparation pass cost, per backbone x image size x batch size x dtype x device.

The rows are in ``epoch_costs.json`` beside this module. ``benchmarks/epoch_breakdown.py --write_costs`` measures
one configuration (a source-only and an SRDC run on the same data) and merges its row in, replacing a row with
the same key. Every row says where its figures come from: ``status`` is ``measured`` (by the command in its
``provenance``, on the machine and date named there) or ``derived`` (from a measurement recorded elsewhere, with
the arithmetic in ``provenance.derivation``).

A row's figures (seconds):

* ``iteration_s_one_batch``: a training iteration that draws one mini-batch (source-only, the oracle, SRDC's
  source pre-training of ``srdc_no_struct``);
* ``iteration_s_two_batches``: an iteration that draws a source and a target mini-batch (SRDC's adaptation:
  two forwards, one backward);
* ``prepare_s_per_image``: the epoch's preparation pass (no-grad extraction at batch 256, K-means in each feature
  space, the validators; :meth:`srdc.trainer.Trainer.prepare`) per image of the domains it passes over.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from srdc.config import SRDCConfig
    from srdc.data import DomainFacts

COSTS_FILE = Path(__file__).with_name("epoch_costs.json")
CPU = "cpu"
FIGURES = ("iteration_s_one_batch", "iteration_s_two_batches", "prepare_s_per_image")
STATUSES = ("measured", "derived")
ABOUT = ("Per-epoch cost figures for --dry-run (srdc/harness/costs.py says what each figure is). Rows are "
         "written by benchmarks/epoch_breakdown.py --write_costs; a 'derived' row says in its provenance how it "
         "was computed and from what.")


@dataclass(frozen=True)
class CostKey:
    """What a row is measured for. ``device``: ``cpu`` or the GPU's name as CUDA reports it; ``image_size``:
    the square input side (``None``: the inputs are not images, e.g. cached features)."""

    backbone: str
    image_size: int | None
    batch_size: int
    dtype: str
    device: str

    def describe(self) -> str:
        size = f"{self.image_size} px" if self.image_size is not None else "no images"
        return f"{self.backbone}, {size}, batch {self.batch_size}, {self.dtype}, on {self.device}"

    def same_model(self, other: CostKey) -> bool:
        """The same configuration apart from the device."""
        return (self.backbone, self.image_size, self.batch_size, self.dtype) == \
            (other.backbone, other.image_size, other.batch_size, other.dtype)


@dataclass(frozen=True)
class CostRow:
    """One row of the table: its key, its figures (seconds, see the module docstring), where they come from."""

    key: CostKey
    iteration_s_one_batch: float
    iteration_s_two_batches: float
    prepare_s_per_image: float
    status: str
    provenance: dict[str, Any] = field(default_factory=dict)

    def iteration_s(self, batches: int) -> float:
        """The cost of one training iteration that draws ``batches`` mini-batches (1 or 2)."""
        return self.iteration_s_one_batch if batches == 1 else self.iteration_s_two_batches

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self.key), **{name: getattr(self, name) for name in FIGURES}, "status": self.status,
                "provenance": self.provenance}

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> CostRow:
        key = CostKey(**{name: values[name] for name in CostKey.__dataclass_fields__})
        if values["status"] not in STATUSES:
            raise ValueError(f"status {values['status']!r} is not one of {', '.join(STATUSES)}")
        return cls(key, *(float(values[name]) for name in FIGURES), values["status"], dict(values["provenance"]))


def dtype_name(bf16: bool, channels_last: bool, cuda: bool) -> str:
    """The ``dtype`` key of a run: ``fp32`` or ``bf16`` (the trainer's autocast runs on CUDA only), with
    ``+channels_last`` when the model and inputs are channels-last."""
    return ("bf16" if bf16 and cuda else "fp32") + ("+channels_last" if channels_last else "")


def input_size(config: SRDCConfig, default_backbone: str, facts: DomainFacts | None = None) -> int | None:
    """The ``image_size`` key of a run: the side of an in-memory domain's images (``facts``; ``None`` for feature
    vectors), else the crop of the backbone's transform profile (the ResNets': 224 unless ``image_size``)."""
    from srdc.data.images import config_profile

    if facts is not None and facts.in_memory:
        return facts.side
    return config_profile(config, default_backbone).sizes(config.image_size)[1]


def load_costs(path: Path = COSTS_FILE) -> list[CostRow]:
    """The rows of the table at ``path`` (none when there is no file)."""
    if not path.is_file():
        return []
    return [CostRow.from_json(values) for values in json.loads(path.read_text())["rows"]]


def merge_row(row: CostRow, path: Path = COSTS_FILE) -> None:
    """Write ``row`` into the table at ``path`` (atomically), replacing the row with the same key."""
    rows = [old for old in load_costs(path) if old.key != row.key] + [row]
    text = json.dumps({"about": ABOUT, "rows": [r.to_json() for r in rows]}, indent=2) + "\n"
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as out:
        out.write(text)
    os.replace(out.name, path)


def find_row(rows: Iterable[CostRow], key: CostKey) -> tuple[CostRow | None, str]:
    """The row for ``key`` and a note on how it was chosen. A CPU key needs its exact row. A GPU key (``device``:
    the GPU's name, or ``gpu`` when it is not known) takes the row of that GPU (a name containing the other),
    else the first GPU row of the same configuration, with a note saying whose figures stand in; a bf16 or
    channels-last GPU key without any row takes the fp32 row (the GPU default is bf16 + channels_last: its
    figures are an upper bound then, said in the note)."""
    rows = list(rows)
    row, note = _find_exact(rows, key)
    if row is None and key.device != CPU and key.dtype != "fp32":
        row, note = _find_exact(rows, dataclasses.replace(key, dtype="fp32"))
        if row is not None:
            note = "; ".join(filter(None, [f"no {key.dtype} row: planned with the fp32 figures, an upper bound "
                                           f"(measure it: {measure_command(key)})", note]))
    return row, note


def _find_exact(rows: list[CostRow], key: CostKey) -> tuple[CostRow | None, str]:
    same = [row for row in rows if row.key.same_model(key)]
    if key.device == CPU:
        return next((row for row in same if row.key.device == CPU), None), ""
    gpus = [row for row in same if row.key.device != CPU]
    wanted = key.device.lower()
    for row in gpus:
        have = row.key.device.lower()
        if wanted in have or have in wanted:
            return row, ""
    if not gpus:
        return None, ""
    unknown = "the GPU model is not known here" if key.device == "gpu" else f"no row for {key.device}"
    return gpus[0], f"{unknown}: planned with the figures of {gpus[0].key.device}"


def measure_command(key: CostKey) -> str:
    """The benchmark command that measures the row of ``key`` and writes it into the table."""
    flags = [f"--backbone {key.backbone}", f"--batch_size {key.batch_size}",
             f"--device {'cpu' if key.device == CPU else 'cuda'}"]
    if key.image_size is not None:
        flags.insert(1, f"--image_size {key.image_size}")
    if key.dtype.startswith("bf16"):
        flags.append("--bf16 true")
    if key.dtype.endswith("+channels_last"):
        flags.append("--channels_last true")
    return f"python benchmarks/epoch_breakdown.py --dataset synthetic {' '.join(flags)} --write_costs"
