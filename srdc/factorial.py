"""Main effects and interactions of a 2^k factorial design (the three SRDC component switches).

Each block (one task and one seed) that holds all 2^k cells gives one estimate of every effect by the usual
contrast: ``effect(S) = 2^-(k-1) * sum_cells sign_S(cell) * y(cell)``, where ``sign_S`` is the product of the
cell's levels (+1 on, -1 off) over the factors in ``S``. Effects are then summarised across blocks as
mean ± standard error (sample std / sqrt(n)).

:func:`factorial_tables` is the factorial study's printout: the results table with one row per cell of the
three switches (:data:`SWITCHES`), labelled ``S+ F- W+`` and named after the paper's variant where the cell is
one (which brings the paper's number beside ours), and the effects table under it (:func:`render_effects`).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import statistics
from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from srdc.base import SELECTIONS, TrialStatus
from srdc.methods import VARIANT_SWITCHES, VARIANTS
from srdc.report import render
from srdc.tables import Table, aggregate_study, epochs_text, selection_caption

# the factorial study's factors: SRDCConfig's three component switches, and their letters in row labels
SWITCHES = ("structural_source_reg", "feature_discrimination", "soft_source_selection")
LETTERS = {"structural_source_reg": "S", "feature_discrimination": "F", "soft_source_selection": "W"}
BLOCK_KEYS = ("task", "seed")
CELLS = tuple(itertools.product((True, False), repeat=len(SWITCHES)))  # every cell's levels, all-on first
LEGEND = (" Rows: S = structural source regularisation, F = feature discrimination, W = soft source sample "
          "selection; + on, - off; = the paper's variant with these switches. Without S the model is pre-trained "
          "on the source, then trained by eq. (6) alone: W has no effect there, S- rows differing in W alone are "
          "identical.")


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


# -- the factorial study's tables -------------------------------------------------------------------------------
def cell_levels(record: dict[str, Any]) -> tuple[bool, ...]:
    """The record's switches, in :data:`SWITCHES` order."""
    return tuple(bool(record[name]) for name in SWITCHES)


def paper_variant(levels: tuple[bool, ...]) -> str | None:
    """The variant with target clustering whose switches are ``levels`` (``srdc_no_softsel``...), or ``None``."""
    for variant in VARIANTS:
        *switches, target_clustering = VARIANT_SWITCHES[variant]
        if target_clustering and tuple(switches) == levels:
            return variant
    return None


def cell_label(levels: tuple[bool, ...]) -> str:
    """``S+ F+ W- = srdc_no_softsel``; the code alone for cells that are no paper variant."""
    code = " ".join(f"{LETTERS[name]}{'+' if on else '-'}" for name, on in zip(SWITCHES, levels, strict=True))
    variant = paper_variant(levels)
    return f"{code} = {variant}" if variant else code


def _row_name(levels: tuple[bool, ...]) -> str:
    """A cell's row in :func:`srdc.tables.aggregate`: the paper's variant (which brings its number), else the label."""
    return paper_variant(levels) or cell_label(levels)


def _relabel(table: Table) -> Table:
    """Rows named by :func:`_row_name` relabelled by their switches, in :data:`CELLS` order; the legend added."""
    label = {_row_name(levels): cell_label(levels) for levels in CELLS}
    rows = [label[row] for row in sorted(table.rows, key=list(label).index)]
    return dataclasses.replace(table, rows=rows, row_label="switches", caption=table.caption + LEGEND,
                               cells={(label[row], column): cell for (row, column), cell in table.cells.items()})


def render_effects(effects: Sequence[Effect], title: str, caption: str) -> str:
    """A Markdown table of ``effects``: effect, mean ± standard error (accuracy points), blocks."""
    lines = [f"**{title}**", "", "| effect | mean ± s.e. | n |", "|---|---|---|"]
    for effect in effects:
        stderr = "—" if math.isnan(effect.stderr) else f"{effect.stderr:.1f}"
        lines.append(f"| {effect.name} | {effect.mean:+.1f} ± {stderr} | {effect.n_blocks} |")
    if not effects:
        lines.append("| (no task x seed block has all its cells finished yet) | | |")
    return "\n".join([*lines, "", f"*{caption}*", ""])


def cell_tables(records: Sequence[dict[str, Any]], selection: str, planned: int | None,
                study: str) -> list[Table]:
    """The results tables of the factorial study for one model ``selection``: a row per cell of the switches
    (:func:`cell_label`, in :data:`CELLS` order), the paper's number where the cell is one of its variants."""
    named = [{**record, "variant": _row_name(cell_levels(record))} for record in records]
    return [_relabel(table) for table in aggregate_study(named, selection, "variant", planned, study)]


def factorial_tables(records: Sequence[dict[str, Any]], selection: str, planned: int, study: str) -> str:
    """The factorial study's results table (a row per cell) and its effects, for one model ``selection``.

    ``records`` are the study's trials (:func:`srdc.harness.tuner.trial_records`): the switches, task, seed, status
    and accuracies. Effects use the finished trials of complete task x seed blocks.
    """
    metric = SELECTIONS[selection].metric
    tables = cell_tables(records, selection, planned, study)
    finished = [record for record in records
                if record["status"] == TrialStatus.FINISHED and record.get(metric) is not None]
    effects = estimate_effects(finished, SWITCHES, metric, BLOCK_KEYS)
    selectors = {str(record["labelfree_selector"]) for record in finished if "labelfree_selector" in record}
    caption = (f"Main effects and interactions of the 2^{len(SWITCHES)} factorial{epochs_text(records)}, in "
               f"accuracy points: in each "
               f"task x seed block, the mean over the cells where the product of the factors' levels (+1 on, "
               f"-1 off) is +1 minus the mean where it is -1; mean ± standard error (sample std / sqrt(n)) over the "
               f"n complete blocks. Model selection: {selection_caption(selection, selectors)}.")
    title = f"Study {study}: effects of the switches ({selection} selection)"
    return "\n".join([render(tables, "md"), render_effects(effects, title, caption)])
