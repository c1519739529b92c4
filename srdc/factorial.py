"""Main effects and interactions of a 2^k factorial design (the three SRDC component switches).

Each block (one task and one seed) that holds all 2^k cells gives one estimate of every effect by the usual
contrast: ``effect(S) = 2^-(k-1) * sum_cells sign_S(cell) * y(cell)``, where ``sign_S`` is the product of the
cell's levels (+1 on, -1 off) over the factors in ``S``. Effects are then summarised across blocks as
mean ± standard error (sample std / sqrt(n)).
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Effect:
    """One main effect (one factor) or interaction (several), in accuracy points."""

    factors: tuple[str, ...]
    mean: float
    stderr: float
    n_blocks: int

    @property
    def name(self) -> str:
        return " x ".join(self.factors)


def contrast(levels: dict[str, bool], factors: Sequence[str]) -> int:
    """The sign of a cell in the contrast of ``factors``: product of +1 (on) / -1 (off)."""
    return math.prod(1 if levels[f] else -1 for f in factors)


def block_effects(cells: dict[tuple[bool, ...], float], factor_names: Sequence[str]) -> dict[tuple[str, ...], float]:
    """Every effect of one complete block; ``cells`` maps a tuple of levels (in ``factor_names`` order) to y."""
    k = len(factor_names)
    effects = {}
    for order in range(1, k + 1):
        for subset in itertools.combinations(factor_names, order):
            total = sum(contrast(dict(zip(factor_names, levels, strict=True)), subset) * y
                        for levels, y in cells.items())
            effects[subset] = total / 2 ** (k - 1)
    return effects


def estimate_effects(
    records: Sequence[dict], factor_names: Sequence[str], value_key: str, block_keys: Sequence[str]
) -> list[Effect]:
    """Effects across blocks. ``records`` are dicts holding each factor (bool), ``value_key`` and the
    ``block_keys`` (e.g. task and seed); blocks missing a cell are left out (their count shows in ``n_blocks``).
    """
    blocks: dict[Hashable, dict[tuple[bool, ...], float]] = defaultdict(dict)
    for record in records:
        block = tuple(record[key] for key in block_keys)
        blocks[block][tuple(bool(record[f]) for f in factor_names)] = float(record[value_key])
    complete = [cells for cells in blocks.values() if len(cells) == 2 ** len(factor_names)]
    per_block = [block_effects(cells, factor_names) for cells in complete]
    summary = []
    for subset in (per_block[0] if per_block else {}):
        values = [effects[subset] for effects in per_block]
        stderr = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
        summary.append(Effect(subset, statistics.fmean(values), stderr, len(values)))
    return summary
