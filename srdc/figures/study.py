"""A study's figures: small PNGs beside its tables (``results/``), on its MLflow parent run and in its HTML page.

* :func:`ablation_chart`, one per printed model selection: a bar per row (variant) per task, grouped by task, its
  height the mean over seeds and its error bar their sample std (the cells of :func:`srdc.tables.aggregate`, so
  the chart shows the table's numbers), and a paper's number a black line across the bar where a paper has one (a
  line style per paper, named in the legend); the accuracy axis starts at 0;
* :func:`learning_curves`: target accuracy by epoch, mean over seeds with a shaded ± std band (sample std), a line per
  row and a panel per task, from the records' epoch histories (:data:`HISTORY`);
* :func:`interaction_plot`, for the factorial study (its grid holds the switches of :mod:`srdc.factorial`): the mean
  accuracy with one switch off and on, a line per level of another;
* :func:`search_chart`, for a search: the accuracies of its trials against each searched parameter;
* :func:`validator_chart`, when the records' histories hold the label-free validators: each validator's mean gap of
  its epoch pick to the oracle's, a bar per method with the standard error over runs (:mod:`srdc.validator_report`).

:func:`study_figures` draws every figure a study's results call for. matplotlib is imported only when a figure is
drawn, and used without pyplot (a :class:`matplotlib.figure.Figure` saved by the Agg canvas): no display, no global
state.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from srdc.base import LABELFREE, ORACLE, PRINTED_SELECTIONS, SELECTIONS, TrialStatus
from srdc.factorial import LETTERS, SWITCHES, cell_label, cell_levels, cell_tables
from srdc.paper_results import PAPERS, paper_task
from srdc.report import StudyResults
from srdc.tables import Table, order_rows
from srdc.validator_report import ValidatorScore, finished_with_history, scores_by
from srdc.validators import VALIDATORS

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# a record's epoch history, where known: one dict per epoch holding what it has of :data:`HISTORY_KEYS`
HISTORY = "history"
# the per-epoch metric of the learning curves: the target accuracy of that epoch's model
CURVE_METRIC = "acc_target"
# what a record's history holds of each epoch: its number, the target accuracy and every validator's value (the
# validators' figure and report, srdc.validator_report)
HISTORY_KEYS = ("epoch", CURVE_METRIC, *(validator.metric for validator in VALIDATORS.values()))
# the figures' file names
ABLATION_FILE = "ablation_{selection}.png"
CURVES_FILE = "learning_curves.png"
INTERACTION_FILE = "interaction.png"
SEARCH_FILE = "search_accuracy.png"
VALIDATORS_FILE = "validator_gaps.png"
DPI = 100
ACCURACY_LABEL = "target accuracy (%)"
# the line style of each paper's numbers across the bars, in the order of srdc.paper_results.PAPERS
PAPER_LINES = ("solid", "dashed", "dotted", "dashdot")
# the accuracies of a search trial against its parameters: metric -> legend label
SEARCH_METRICS = {SELECTIONS[ORACLE].metric: "oracle selection", SELECTIONS[LABELFREE].metric: "label-free selection"}


@dataclass(frozen=True)
class Bar:
    """One bar of an ablation chart: a table cell (mean and sample std over seeds), a paper's number and that
    paper's name (:data:`srdc.paper_results.PAPERS`)."""

    column: str
    row: str
    mean: float
    std: float | None
    paper: float | None
    source: str = ""


@dataclass(frozen=True)
class Curve:
    """The mean ± sample std over seeds (std 0 at an epoch with one seed) of one row's target accuracy per epoch
    on one task (``panel``)."""

    panel: str
    label: str
    epochs: list[int]
    mean: list[float]
    std: list[float]


# -- the numbers -------------------------------------------------------------------------------------------------
def ablation_bars(table: Table) -> list[Bar]:
    """The bars of ``table``: one per cell, by column (the tasks, then Avg) and row."""
    return [Bar(column, row, cell.mean, cell.std, cell.paper, cell.source) for column in table.columns
            for row in table.rows
            if (cell := table.cells.get((row, column))) is not None]


def switch_on(value: Any) -> bool:
    """A switch's level from a record: a boolean (Tune's configs) or its text (``"True"``, MLflow's params)."""
    return value if isinstance(value, bool) else str(value).strip().lower() == "true"


def is_factorial(results: StudyResults) -> bool:
    """Whether the study's grid holds every switch of :mod:`srdc.factorial` (the factorial study)."""
    return set(SWITCHES) <= set(results.split)


def with_switches(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records with their switches as booleans (:func:`switch_on`)."""
    return [{**record, **{name: switch_on(record[name]) for name in SWITCHES}} for record in records]


def series_label(results: StudyResults) -> Callable[[dict[str, Any]], str]:
    """A record's line in the learning curves: its factorial cell (:func:`srdc.factorial.cell_label`), else its
    ``rows`` value after the values of the fields that split the study's tables."""
    if is_factorial(results):
        return lambda record: cell_label(cell_levels(record))
    return lambda record: " ".join([*(f"{key}={record.get(key)}" for key in results.split), str(record[results.rows])])


def panel_name(record: dict[str, Any], several: bool) -> str:
    """A record's task as the tables name it, after its dataset and setting when the study has ``several``."""
    task = paper_task(str(record["dataset"]), str(record["task"]))
    return f"{record['dataset']}, {record.get('setting', 'transductive')}: {task}" if several else task


def mean_curves(records: Sequence[dict[str, Any]], label: Callable[[dict[str, Any]], str]) -> list[Curve]:
    """The curves of the finished records that hold a history: one per task and ``label``, each epoch's mean and
    sample std over the records (seeds) that reached it; panels in the records' order, labels in
    :func:`srdc.tables.order_rows` order."""
    finished = [record for record in records if record.get("status") == TrialStatus.FINISHED and record.get(HISTORY)]
    several = len({(record["dataset"], record.get("setting", "transductive")) for record in finished}) > 1
    groups: dict[tuple[str, str], list[dict[int, float]]] = {}
    for record in finished:
        values = {int(row["epoch"]): float(row[CURVE_METRIC]) for row in record[HISTORY] if CURVE_METRIC in row}
        groups.setdefault((panel_name(record, several), label(record)), []).append(values)
    panels = list(dict.fromkeys(panel for panel, _ in groups))
    order = order_rows({name for _, name in groups})
    curves = []
    for panel, name in sorted(groups, key=lambda key: (panels.index(key[0]), order.index(key[1]))):
        histories = groups[panel, name]
        epochs = sorted({epoch for history in histories for epoch in history})
        at = [[history[epoch] for history in histories if epoch in history] for epoch in epochs]
        curves.append(Curve(panel, name, epochs, [statistics.mean(values) for values in at],
                            [statistics.stdev(values) if len(values) > 1 else 0.0 for values in at]))
    return curves


def interaction_means(records: Sequence[dict[str, Any]], metric: str, factor: str,
                      other: str) -> dict[tuple[bool, bool], float]:
    """``(level of other, level of factor)`` -> the mean ``metric`` of the finished records at those levels (over
    tasks, seeds and the remaining switches)."""
    values: dict[tuple[bool, bool], list[float]] = {}
    for record in records:
        if record.get("status") == TrialStatus.FINISHED and record.get(metric) is not None:
            key = (switch_on(record[other]), switch_on(record[factor]))
            values.setdefault(key, []).append(float(record[metric]))
    return {key: statistics.mean(found) for key, found in values.items()}


# -- drawing -----------------------------------------------------------------------------------------------------
def new_figure(width: float, height: float) -> Figure:
    """An empty figure (inches) that lays itself out; matplotlib is imported here."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def save(figure: Figure, path: Path) -> Path:
    """``figure`` as the PNG ``path``."""
    figure.savefig(path, dpi=DPI)
    return path


def colour(index: int) -> str:
    """The ``index``-th colour of matplotlib's default cycle (``C0``...), the same for a row in every figure."""
    return f"C{index % 10}"


def ablation_panel(axes: Axes, table: Table) -> None:
    """One table's bars grouped by column, with error bars and the papers' numbers (a line style per paper), on an
    accuracy axis that starts at 0."""
    bars = ablation_bars(table)
    columns = [column for column in table.columns if any(bar.column == column for bar in bars)]
    rows = [row for row in table.rows if any(bar.row == row for bar in bars)]
    width = 0.8 / len(rows)
    # the papers' numbers are those of their protocols (the SRDC paper's: the oracle selection), beside every
    # selection's bars
    protocol = "" if table.selection == ORACLE else " (oracle selection)"
    named: set[str] = set()
    for index, row in enumerate(rows):
        mine = [bar for bar in bars if bar.row == row]
        xs = [columns.index(bar.column) + (index - (len(rows) - 1) / 2) * width for bar in mine]
        errors = [math.nan if bar.std is None else bar.std for bar in mine]
        axes.bar(xs, [bar.mean for bar in mine], width, yerr=errors, capsize=2, label=row, color=colour(index))
        for x, bar in zip(xs, mine, strict=True):
            if bar.paper is not None:
                axes.hlines(bar.paper, x - width / 2, x + width / 2, colors="black", linewidth=2,
                            linestyles=PAPER_LINES[list(PAPERS).index(bar.source) % len(PAPER_LINES)],
                            label=None if bar.source in named else f"{bar.source}{protocol}")
                named.add(bar.source)
    axes.set_ylim(bottom=0.0)
    axes.set_xticks(range(len(columns)), columns)
    axes.set_ylabel(ACCURACY_LABEL)
    axes.set_title(table.title, fontsize=9)
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))


def ablation_chart(tables: Sequence[Table], path: Path) -> Path:
    """The tables of one model selection as bar charts (:func:`ablation_bars`), a panel per table, into ``path``."""
    drawn = [table for table in tables if table.cells]
    widest = max(len(table.columns) * len(table.rows) for table in drawn)
    figure = new_figure(max(7.0, 3.0 + 0.3 * widest), 3.2 * len(drawn))
    for axes, table in zip(figure.subplots(len(drawn), 1, squeeze=False)[:, 0], drawn, strict=True):
        ablation_panel(axes, table)
    return save(figure, path)


def learning_curves(curves: Sequence[Curve], title: str, path: Path) -> Path:
    """The curves (:func:`mean_curves`), a panel per task, into ``path``."""
    panels = list(dict.fromkeys(curve.panel for curve in curves))
    labels = order_rows({curve.label for curve in curves})
    columns = min(len(panels), 3)
    rows = math.ceil(len(panels) / columns)
    figure = new_figure(max(7.0, 1.0 + 3.6 * columns), 1.0 + 0.2 * math.ceil(len(labels) / 3) + 2.8 * rows)
    grid = figure.subplots(rows, columns, squeeze=False, sharey=True)
    for axes in grid.flat[len(panels):]:
        axes.set_visible(False)
    for axes, panel in zip(grid.flat, panels, strict=False):
        for curve in (curve for curve in curves if curve.panel == panel):
            index = labels.index(curve.label)
            low = [mean - std for mean, std in zip(curve.mean, curve.std, strict=True)]
            high = [mean + std for mean, std in zip(curve.mean, curve.std, strict=True)]
            axes.plot(curve.epochs, curve.mean, color=colour(index), label=curve.label)
            axes.fill_between(curve.epochs, low, high, color=colour(index), alpha=0.2, linewidth=0)
        axes.set_title(panel, fontsize=9)
        axes.set_xlabel("epoch")
        axes.xaxis.get_major_locator().set_params(integer=True)
    for axes in grid[:, 0]:
        axes.set_ylabel(ACCURACY_LABEL)
    handles, names = grid.flat[0].get_legend_handles_labels()
    figure.legend(handles, names, fontsize="small", loc="outside lower center", ncols=min(len(names), 3))
    figure.suptitle(title, fontsize=10)
    return save(figure, path)


def interaction_plot(records: Sequence[dict[str, Any]], title: str, path: Path) -> Path:
    """For each pair of switches and each printed selection, the mean accuracy with the first switch off and on
    (:func:`interaction_means`), a line per level of the second; parallel lines: no interaction. Into ``path``."""
    pairs = list(itertools.combinations(SWITCHES, 2))
    figure = new_figure(3.4 * len(pairs), 0.6 + 2.8 * len(PRINTED_SELECTIONS))
    grid = figure.subplots(len(PRINTED_SELECTIONS), len(pairs), squeeze=False)
    for row, selection in enumerate(PRINTED_SELECTIONS):
        metric = SELECTIONS[selection].metric
        for column, (factor, other) in enumerate(pairs):
            axes = grid[row, column]
            means = interaction_means(records, metric, factor, other)
            for level in (False, True):
                xs = [x for x in (0, 1) if (level, bool(x)) in means]
                axes.plot(xs, [means[level, bool(x)] for x in xs], marker="o", color=colour(int(level)),
                          label=f"{LETTERS[other]}{'+' if level else '-'}")
            axes.set_xticks([0, 1], [f"{LETTERS[factor]}-", f"{LETTERS[factor]}+"])
            axes.set_xlim(-0.3, 1.3)
            axes.set_title(f"{factor} x {other}", fontsize=8)
            axes.set_ylabel(f"{SELECTIONS[selection].title}\n{ACCURACY_LABEL}", fontsize=8)
            axes.legend(fontsize="small")
    figure.suptitle(f"{title} (S, F, W: the switches; +: on, -: off)", fontsize=10)
    return save(figure, path)


def search_chart(records: Sequence[dict[str, Any]], log_scale: dict[str, bool], title: str, path: Path) -> Path:
    """A search's trials: each accuracy of :data:`SEARCH_METRICS` against each searched parameter (the keys of
    ``log_scale``, a log axis where it says so), trials ASHA stopped early hollow (their accuracies are those of
    fewer epochs). Into ``path``."""
    figure = new_figure(0.6 + 3.8 * len(log_scale), 3.4)
    for axes, key in zip(figure.subplots(1, len(log_scale), squeeze=False)[0], log_scale, strict=True):
        for index, (metric, name) in enumerate(SEARCH_METRICS.items()):
            for stopped in (False, True):
                status = TrialStatus.STOPPED if stopped else TrialStatus.FINISHED
                points = [(float(record[key]), float(record[metric])) for record in records
                          if metric in record and record["status"] == status]
                if points:
                    xs, ys = zip(*points, strict=True)
                    axes.scatter(xs, ys, s=24, edgecolors=colour(index),
                                 facecolors="none" if stopped else colour(index),
                                 label=f"{name}{', stopped early' if stopped else ''}")
        if log_scale[key]:
            axes.set_xscale("log")
        axes.set_xlabel(key)
        axes.set_ylabel(ACCURACY_LABEL)
        axes.legend(fontsize="x-small")
    figure.suptitle(title, fontsize=10)
    return save(figure, path)


def validator_chart(by_variant: dict[str, dict[str, ValidatorScore]], title: str, path: Path) -> Path:
    """Per validator (ranked by its gap averaged over the methods, the smallest first), the mean gap of its epoch
    pick to the oracle's, a bar per method with its standard error over runs; into ``path``."""
    mean_gap = {name: statistics.fmean(gaps) for name in VALIDATORS if (gaps := [
        scores[name].epoch_gap for scores in by_variant.values() if scores[name].epoch_gap is not None])}
    ranked = sorted(mean_gap, key=mean_gap.get)
    variants = order_rows(set(by_variant))
    width = 0.8 / len(variants)
    figure = new_figure(max(7.0, 1.5 + 0.25 * len(ranked) * len(variants)), 3.6)
    axes = figure.subplots()
    for index, variant in enumerate(variants):
        scores = by_variant[variant]
        xs = [position + (index - (len(variants) - 1) / 2) * width for position in range(len(ranked))]
        gaps = [scores[name].epoch_gap if scores[name].epoch_gap is not None else math.nan for name in ranked]
        errors = [scores[name].epoch_gap_se if scores[name].epoch_gap_se is not None else math.nan for name in ranked]
        axes.bar(xs, gaps, width, yerr=errors, capsize=2, color=colour(index), label=variant)
    axes.set_xticks(range(len(ranked)), ranked, rotation=30, ha="right", fontsize=8)
    axes.set_ylim(bottom=0.0)
    axes.set_ylabel("gap to the oracle's pick\n(points of target accuracy)", fontsize=8)
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axes.set_title(title, fontsize=9)
    return save(figure, path)


def study_figures(results: StudyResults, folder: Path) -> list[Path]:
    """Every figure of ``results`` that has something to show, as PNGs in ``folder`` (made when missing): the
    ablation chart of each printed selection (for the factorial study its cells are the rows), the learning curves
    when records hold histories, the interaction plot of the factorial study, the validators' gaps when the histories
    hold them. Their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    factorial = is_factorial(results)
    records = with_switches(results.records) if factorial else list(results.records)
    paths = []
    for selection in PRINTED_SELECTIONS:
        tables = (cell_tables(records, selection, None, results.study) if factorial
                  else [table for table in results.tables if table.selection == selection])
        if any(table.cells for table in tables):
            paths.append(ablation_chart(tables, folder / ABLATION_FILE.format(selection=selection)))
    curves = mean_curves(records, series_label(results))
    if curves:
        title = f"Study {results.study}\ntarget accuracy by epoch, mean ± std over seeds"
        paths.append(learning_curves(curves, title, folder / CURVES_FILE))
    if factorial and any(record.get("status") == TrialStatus.FINISHED for record in records):
        paths.append(interaction_plot(records, f"Study {results.study}: interactions of the switches",
                                      folder / INTERACTION_FILE))
    by_variant = scores_by(finished_with_history(records), "variant")
    if any(score.epoch_gap is not None for scores in by_variant.values() for score in scores.values()):
        title = f"Study {results.study}: label-free validators' epoch picks against the oracle's (mean ± se over runs)"
        paths.append(validator_chart(by_variant, title, folder / VALIDATORS_FILE))
    return paths
