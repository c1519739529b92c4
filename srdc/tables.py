"""A study's results tables, beside the paper's numbers: the arithmetic, a pure function of trial records.

Rows are variants (or another config field, ``--rows``), columns the tasks and their average; a cell is the
mean±std over seeds of the finished trials (sample std, ddof=1) with ``n=k`` when fewer than the planned seeds
have finished, and a paper's number with our difference where a paper reports that cell. It works at any
time: mid-study, unfinished trials are left out. Every caption states the budget (the epochs trained, the seeds
per cell: ``mean±std`` only over two or more), the model-selection protocol, and the paper of each reference
number. A smoke test's stand-in tasks are named after the tasks they stand in for (:func:`with_stand_ins`).

:func:`aggregate`, :func:`aggregate_study` and :func:`grouped_tables` make the tables of records (one dict per
trial); :mod:`srdc.report` renders them (Markdown, CSV, LaTeX, HTML) and makes everything a study ends with.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from srdc.base import ORACLE, TrialStatus, selection_named
from srdc.config import default_of
from srdc.errors import SRDCInputError
from srdc.methods import BASELINES, METHODS, VARIANTS
from srdc.paper_results import (
    Reference,
    paper_average,
    paper_reference,
    paper_task,
    reference_note,
    reference_task_order,
)

AVG = "Avg"
# the inductive setting (paper Table 2): where each selection's epoch is chosen and its accuracy measured
INDUCTIVE_WHERE = {
    "oracle_train_half": "the epoch is chosen on the target training half and its accuracy is that half's",
    "oracle_test_half": "the epoch is chosen on the held-out target test half and its accuracy is that half's",
}
INDUCTIVE_TIES = {"release": "the highest test-half accuracy (the released code's rule)",
                  "earliest": "the earliest epoch"}


def inductive_note(selection: str, records: Sequence[dict[str, Any]]) -> str:
    """The caption's sentence on the inductive setting: where ``selection`` chooses its epoch and measures its
    accuracy; for the oracle, how ties between epochs of equal training-half accuracy go (the records'
    ``inductive_oracle_ties``); and which of the released code's three accuracies paper Table 2 reports."""
    where = INDUCTIVE_WHERE.get(selection, "epochs are chosen on the target training half, accuracies are those of "
                                           "the held-out target test half")
    note = f" Inductive setting: {where}."
    if selection == ORACLE:
        rules = sorted({str(record.get("inductive_oracle_ties", default_of("inductive_oracle_ties")))
                        for record in records})
        note += (" Among epochs of equal training-half accuracy the oracle takes "
                 + " or ".join(INDUCTIVE_TIES[rule] for rule in rules) + ".")
    return note + (" Paper Table 2 reports the oracle's (the test half at the model best on the training half, "
                   "Section 5.2); the released code also logs oracle_train_half and oracle_test_half.")


@dataclass(frozen=True)
class Cell:
    """One table cell: mean and sample std over ``n`` seeds (std ``None`` below two), a paper's number and which
    paper published it (a name of :data:`srdc.paper_results.PAPERS`)."""

    mean: float
    std: float | None
    n: int
    paper: float | None = None
    source: str = ""

    @property
    def diff(self) -> float | None:
        """Ours minus the paper's."""
        return None if self.paper is None else self.mean - self.paper


@dataclass(frozen=True)
class Table:
    """A results table: ``cells[(row, column)]``; the columns are the tasks and then ``Avg``."""

    title: str
    caption: str
    row_label: str
    rows: list[str]
    columns: list[str]
    cells: dict[tuple[str, str], Cell]
    planned: int
    selection: str
    group: str = ""  # the values of the fields that split a study's tables (``lambda_scale=0.5``), if any


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof=1; ``None`` for a single value)."""
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else None)


def order_rows(values: set[str]) -> list[str]:
    """Variants in the paper's order (source_only ... srdc, oracle), the baselines (dann, cdan), then the others:
    numerically when they all are numbers, else alphabetically."""
    known = [variant for variant in (*VARIANTS, *BASELINES) if variant in values]
    others = values - set(known)
    try:
        return known + sorted(others, key=float)
    except ValueError:
        return known + sorted(others)


def batchnorm_note(records: Sequence[dict[str, Any]], row_names: Sequence[str]) -> str:
    """The caption's sentence naming the BatchNorm statistics each row (a registered variant) is evaluated with: each
    domain's own (AdaBN, or ``prep_batchnorm domain``), or the running statistics of training and what they average
    (:attr:`srdc.methods.Method.training_batchnorm`). Empty when the rows are not variants."""
    regimes: dict[str, list[str]] = {}
    for variant in row_names:
        if variant not in METHODS:
            return ""
        method = METHODS.lookup(variant)
        chosen = {method.preparation_batchnorm or str(record.get("prep_batchnorm", default_of("prep_batchnorm")))
                  for record in records if record.get("variant") == variant}
        for regime in sorted(chosen):
            text = "each domain's own statistics" if regime == "domain" else \
                f"the running statistics of training, over {method.training_batchnorm}"
            regimes.setdefault(text, []).append(variant)
    return "" if not regimes else " BatchNorm at evaluation: " + "; ".join(
        f"{text} ({', '.join(variants)})" for text, variants in regimes.items()) + "."


def order_tasks(dataset: str, tasks: set[str]) -> list[str]:
    """The paper's task order where the paper has the tasks, the others alphabetically after them."""
    paper_order = [task for task in reference_task_order(dataset) if task in tasks]
    return paper_order + sorted(tasks - set(paper_order))


def selection_caption(selection: str, selectors: set[str]) -> str:
    """``"oracle = epoch chosen with target labels (...)"`` and so on."""
    description = selection_named(selection).chosen
    selector = "/".join(sorted(selectors)) or "the label-free selector"
    return f"{selection} = {description.format(selector=selector)}"


def _cell_values(records: list[dict[str, Any]], metric: str, where: str) -> list[float]:
    """The metric of each seed; a seed twice in one cell is an error (another field varies too)."""
    seeds = [str(record["seed"]) for record in records]
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        raise SRDCInputError(
            f"{where} holds several finished trials with seed {', '.join(repeated)}: the study varies a config "
            f"field besides the rows; choose it with --rows FIELD"
        )
    return [float(record[metric]) for record in records]


def aggregate(records: list[dict[str, Any]], selection: str = ORACLE, rows: str = "variant",
              planned: int | None = None, study: str = "", group: str = "") -> Table:
    """The results table of records that share one dataset and setting.

    A record is one trial: ``dataset``, ``setting``, ``task``, ``seed``, ``status``, the ``rows`` field, and
    the accuracies ``acc_last``/``acc_best_oracle``/``acc_labelfree`` (for finished trials), optionally
    ``labelfree_selector`` and ``epochs`` (the budget the caption states). Rows and columns come from every
    record, cells from FINISHED ones only.
    ``planned``: the seeds planned per cell (default: the most any cell has). The title names the study, the
    ``group`` (see :func:`grouped_tables`), the dataset, the setting and the selection.
    """
    metric = selection_named(selection).metric
    groups = {dataset_setting(record) for record in records}
    if len(groups) != 1:
        raise ValueError(f"aggregate() takes the records of one dataset and setting, got {sorted(groups)}")
    (dataset, setting), = groups
    keyed = [(str(record[rows]), paper_task(dataset, str(record["task"])), record) for record in records]
    row_names = order_rows({row for row, _, _ in keyed})
    tasks = order_tasks(dataset, {task for _, task, _ in keyed})
    finished = [(row, task, r) for row, task, r in keyed
                if r["status"] == TrialStatus.FINISHED and r.get(metric) is not None]
    compare = rows == "variant"
    cells: dict[tuple[str, str], Cell] = {}
    for row in row_names:
        for task in tasks:
            found = [r for row_, task_, r in finished if (row_, task_) == (row, task)]
            if found:
                mean, std = mean_std(_cell_values(found, metric, f"cell {row} / {task}"))
                cells[row, task] = Cell(mean, std, len(found),
                                        *_reference(paper_reference(dataset, setting, row, task) if compare else None))
        if all((row, task) in cells for task in tasks):
            task_cells = [cells[row, task] for task in tasks]
            cells[row, AVG] = Cell(statistics.mean(c.mean for c in task_cells), None, min(c.n for c in task_cells),
                                   *_reference(paper_average(dataset, setting, row, tasks) if compare else None))
    planned = planned or max((cell.n for cell in cells.values()), default=0)
    selectors = {str(r["labelfree_selector"]) for _, _, r in finished if "labelfree_selector" in r}
    label = " ".join(part for part in (study, group) if part)
    what = f"{dataset}, {setting}, {selection_named(selection).title}"
    title = f"Study {label}: {what}" if label else what
    papers = {cell.source for cell in cells.values() if cell.paper is not None}
    incomplete = any(cell.n < planned for cell in cells.values())
    caption = (f"{title}. Target accuracy (%){epochs_text(records)}, {seeds_text(planned, incomplete)}. Avg: mean "
               f"over tasks of the per-task means. Model selection: {selection_caption(selection, selectors)}.")
    if papers:
        caption += (f" In parentheses: the number the paper named published "
                    f"({reference_note(dataset, setting, papers)}) and ours minus it.")
    if setting == "inductive":
        caption += inductive_note(selection, records)
    if rows == "variant":
        caption += batchnorm_note(records, row_names)
    return Table(title, caption, rows, row_names, [*tasks, AVG], cells, planned, selection, group)


def dataset_setting(record: dict[str, Any]) -> tuple[str, str]:
    """A record's (dataset, setting); the setting defaults to transductive."""
    return str(record["dataset"]), str(record.get("setting", "transductive"))


def _reference(found: Reference | None) -> tuple[float | None, str]:
    """A cell's paper number and paper name, ``(None, "")`` without one."""
    return (None, "") if found is None else (found.value, found.paper)


def epochs_text(records: Sequence[dict[str, Any]]) -> str:
    """The training budget of the records (their ``epochs`` field): ``" after 2 epochs of training"``, several
    budgets joined (``" after 2/5 epochs ..."``); empty when no record says."""
    epochs = sorted({int(float(record["epochs"])) for record in records if record.get("epochs") not in (None, "")})
    if not epochs:
        return ""
    return f" after {'/'.join(map(str, epochs))} epoch{'' if epochs == [1] else 's'} of training"


def seeds_text(planned: int, incomplete: bool) -> str:
    """What a cell holds: ``mean±std`` over two or more seeds, else the one seed's run."""
    if planned < 2:
        return "1 seed per cell (a single run: no mean or std over seeds)"
    text = f"mean±std over {planned} seeds per cell (sample std, ddof=1)"
    return text + (f"; n=k: only k of the {planned} planned seeds have finished" if incomplete else "")


def with_stand_ins(records: list[dict[str, Any]], stand_ins: Mapping[str, str]) -> list[dict[str, Any]]:
    """The records with each stand-in task of a smoke test named after the study's task it stands in for
    (``stand_ins``: stand-in task -> that task): ``digits->digits_photo`` becomes ``A->W (digits->digits_photo)``."""
    return [{**record, "task": f"{stand_ins[record['task']]} ({record['task']})"}
            if record.get("task") in stand_ins else record for record in records]


def aggregate_study(records: list[dict[str, Any]], selection: str = ORACLE, rows: str = "variant",
                    planned: int | None = None, study: str = "", group: str = "") -> list[Table]:
    """One table per (dataset, setting) in ``records``; see :func:`aggregate`."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(dataset_setting(record), []).append(record)
    return [aggregate(members, selection, rows, planned, study, group) for _, members in sorted(groups.items())]


def grouped_tables(records: list[dict[str, Any]], selection: str = ORACLE, rows: str = "variant",
                   planned: int | None = None, study: str = "", split: Sequence[str] = ()) -> list[Table]:
    """The tables of :func:`aggregate_study`, one set per combination of the values of the ``split`` fields (the
    grid fields besides the rows), in the order the records first show it; its ``key=value`` pairs are the
    tables' ``group``."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(tuple(record.get(key) for key in split), []).append(record)
    tables = []
    for values, members in groups.items():
        group = " ".join(f"{key}={value}" for key, value in zip(split, values, strict=True))
        tables += aggregate_study(members, selection, rows, planned, study, group)
    return tables
