"""A study's results tables, beside the paper's numbers: pure arithmetic and rendering of trial records.

Rows are variants (or another config field, ``--rows``), columns the tasks and their average; a cell is the
mean±std over seeds of the finished trials (sample std, ddof=1) with ``n=k`` when fewer than the planned seeds
have finished, and the paper's number with our difference where the paper reports that cell. It works at any
time: mid-study, unfinished trials are left out. The model-selection protocol is named in every caption.

The aggregation (:func:`aggregate`, :func:`aggregate_study`, :func:`grouped_tables`) and rendering (:func:`render`:
Markdown, CSV, LaTeX, or a self-contained HTML page) are pure functions of records (one dict per trial), and so is
:func:`study_results`, everything a study ends with (the tables of every selection in every format, summary
metrics, tags) for its tracking parent run. Where the records come from (a tracking store, Tune's results) is the
caller's business: :mod:`srdc.report_cli` is the ``srdc-report`` command, reading them from the tracking store.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from srdc.base import ORACLE, PRINTED_SELECTIONS, SELECTIONS, TrialStatus
from srdc.errors import SRDCInputError
from srdc.methods import BASELINES, VARIANTS
from srdc.paper_results import paper_average, paper_reference, paper_task, reference_note, reference_task_order

AVG = "Avg"
FORMATS = ("md", "csv", "latex", "html")
# what a study's results are saved as: format -> file name
RESULT_FILES = {"md": "tables.md", "csv": "tables.csv", "latex": "tables.tex", "html": "report.html"}
# the image types a report page embeds, by file suffix
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}
# the inductive setting (paper Table 2): where the epoch is chosen and where the accuracy is measured
INDUCTIVE_NOTE = (" Inductive setting: epochs are chosen on the target training half, accuracies are those of the "
                  "held-out target test half.")


@dataclass(frozen=True)
class Cell:
    """One table cell: mean and sample std over ``n`` seeds (std ``None`` below two), the paper's number."""

    mean: float
    std: float | None
    n: int
    paper: float | None = None

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


def order_tasks(dataset: str, tasks: set[str]) -> list[str]:
    """The paper's task order where the paper has the tasks, the others alphabetically after them."""
    paper_order = [task for task in reference_task_order(dataset) if task in tasks]
    return paper_order + sorted(tasks - set(paper_order))


def selection_caption(selection: str, selectors: set[str]) -> str:
    """``"oracle = epoch chosen with target labels (...)"`` and so on."""
    description = SELECTIONS[selection].chosen
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
    ``labelfree_selector``. Rows and columns come from every record, cells from FINISHED ones only.
    ``planned``: the seeds planned per cell (default: the most any cell has). The title names the study, the
    ``group`` (see :func:`grouped_tables`), the dataset, the setting and the selection.
    """
    metric = SELECTIONS[selection].metric
    groups = {_group(record) for record in records}
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
                paper = paper_reference(dataset, setting, row, task) if compare else None
                cells[row, task] = Cell(mean, std, len(found), paper)
        if all((row, task) in cells for task in tasks):
            task_cells = [cells[row, task] for task in tasks]
            paper = paper_average(dataset, setting, row, tasks) if compare else None
            cells[row, AVG] = Cell(statistics.mean(c.mean for c in task_cells), None,
                                   min(c.n for c in task_cells), paper)
    planned = planned or max((cell.n for cell in cells.values()), default=0)
    selectors = {str(r["labelfree_selector"]) for _, _, r in finished if "labelfree_selector" in r}
    label = " ".join(part for part in (study, group) if part)
    what = f"{dataset}, {setting}, {SELECTIONS[selection].title}"
    title = f"Study {label}: {what}" if label else what
    has_paper = any(cell.paper is not None for cell in cells.values())
    incomplete = any(cell.n < planned for cell in cells.values())
    caption = _caption(title, selection, selectors, planned, dataset, setting if has_paper else None, incomplete)
    if setting == "inductive":
        caption += INDUCTIVE_NOTE
    return Table(title, caption, rows, row_names, [*tasks, AVG], cells, planned, selection, group)


def _group(record: dict[str, Any]) -> tuple[str, str]:
    """A record's (dataset, setting); the setting defaults to transductive."""
    return str(record["dataset"]), str(record.get("setting", "transductive"))


def _caption(title: str, selection: str, selectors: set[str], planned: int, dataset: str,
             paper_setting: str | None, incomplete: bool) -> str:
    seeds = f"; n=k: only k of the {planned} planned seeds have finished" if incomplete else ""
    caption = (
        f"{title}. Target accuracy (%), mean±std over seeds (sample std, ddof=1){seeds}. Avg: mean over tasks of "
        f"the per-task means. Model selection: {selection_caption(selection, selectors)}."
    )
    if paper_setting is not None:
        caption += (f" In parentheses: {reference_note(dataset, paper_setting)} "
                    f"and ours minus it.")
    return caption


def aggregate_study(records: list[dict[str, Any]], selection: str = ORACLE, rows: str = "variant",
                    planned: int | None = None, study: str = "", group: str = "") -> list[Table]:
    """One table per (dataset, setting) in ``records``; see :func:`aggregate`."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(_group(record), []).append(record)
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


# -- rendering ---------------------------------------------------------------------------------------------
def cell_text(cell: Cell | None, planned: int, plus_minus: str = "±") -> str:
    """``"94.8±0.3 n=2 (paper 95.7, -0.9)"``; empty for a missing cell."""
    if cell is None:
        return ""
    text = f"{cell.mean:.1f}"
    if cell.std is not None:
        text += f"{plus_minus}{cell.std:.1f}"
    if cell.n < planned:
        text += f" n={cell.n}"
    if cell.paper is not None:
        text += f" (paper {cell.paper:.1f}, {cell.diff:+.1f})"
    return text


def _markdown(table: Table) -> str:
    lines = [f"**{table.title}**", "", f"| {table.row_label} | " + " | ".join(table.columns) + " |",
             "|---" * (len(table.columns) + 1) + "|"]
    for row in table.rows:
        texts = [cell_text(table.cells.get((row, column)), table.planned) or "—" for column in table.columns]
        lines.append(f"| {row} | " + " | ".join(texts) + " |")
    return "\n".join([*lines, "", f"*{table.caption}*", ""])


def _latex_escape(text: str) -> str:
    for plain, latex in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#"),
                         ("->", r"$\to$"), ("±", r"$\pm$")):
        text = text.replace(plain, latex)
    return text


def _latex(table: Table) -> str:
    header = " & ".join(_latex_escape(text) for text in [table.row_label, *table.columns])
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{_latex_escape(table.caption)}}}",
             r"\begin{tabular}{l|" + "c" * (len(table.columns) - 1) + "|c}", r"\hline", header + r" \\",
             r"\hline"]
    for row in table.rows:
        texts = [_latex_escape(cell_text(table.cells.get((row, column)), table.planned)) or "--"
                 for column in table.columns]
        lines.append(" & ".join([_latex_escape(row), *texts]) + r" \\")
    return "\n".join([*lines, r"\hline", r"\end{tabular}", r"\end{table}", ""])


def _csv(tables: list[Table]) -> str:
    out = io.StringIO()
    for table in tables:
        out.write(f"# {table.caption}\n")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["table", "row", "column", "mean", "std", "n", "planned", "paper", "diff", "selection"])
    for table in tables:
        for row in table.rows:
            for column in table.columns:
                cell = table.cells.get((row, column))
                if cell is not None:
                    writer.writerow([table.title, row, column, _number(cell.mean), _number(cell.std), cell.n,
                                     table.planned, _number(cell.paper), _number(cell.diff), table.selection])
    return out.getvalue()


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def render(tables: list[Table], fmt: str, title: str = "Results", images: Sequence[Path] = ()) -> str:
    """The tables as Markdown (``md``), CSV (one line per cell, captions as ``#`` lines), LaTeX, or a
    self-contained HTML page called ``title`` (``html``: :func:`html_page` of the Markdown, ``images`` embedded)."""
    if fmt == "csv":
        return _csv(tables)
    if fmt == "html":
        return html_page(title, render(tables, "md"), images)
    render_one = {"md": _markdown, "latex": _latex}[fmt]
    return "\n".join(render_one(table) for table in tables)


# -- the HTML page ------------------------------------------------------------------------------------------
HTML_STYLE = """body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
th { background: #eee; }
p.caption { font-size: 0.9em; color: #555; max-width: 70em; margin-bottom: 2em; }
img { max-width: 100%; display: block; margin: 1em 0; }"""


def _html_row(line: str, cell: str) -> str:
    """A Markdown table row (``| a | b |``) as an HTML one of ``cell`` (``td`` or ``th``) elements."""
    texts = [html.escape(text.strip()) for text in line.strip().strip("|").split("|")]
    return "<tr>" + "".join(f"<{cell}>{text}</{cell}>" for text in texts) + "</tr>"


def markdown_html(markdown: str) -> str:
    """The Markdown this module and the studies' table functions write (``**title**`` lines, tables whose second
    line is ``|---|...``, ``*caption*`` lines, plain lines) as HTML: one ``<h2>``, ``<table>`` or ``<p>`` each."""
    out: list[str] = []
    lines = markdown.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index].strip()
        if line.startswith("|") and index + 1 < len(lines) and lines[index + 1].startswith("|---"):
            body = []
            index += 2
            while index < len(lines) and lines[index].startswith("|"):
                body.append(_html_row(lines[index], "td"))
                index += 1
            out.append("<table>\n" + "\n".join([_html_row(line, "th"), *body]) + "\n</table>")
            continue
        if line.startswith("**") and line.endswith("**") and len(line) > 4:
            out.append(f"<h2>{html.escape(line[2:-2])}</h2>")
        elif line.startswith("*") and line.endswith("*") and len(line) > 2:
            out.append(f'<p class="caption">{html.escape(line[1:-1])}</p>')
        elif line:
            out.append(f"<p>{html.escape(line)}</p>")
        index += 1
    return "\n".join(out)


def image_html(path: Path) -> str:
    """The image file ``path`` as an ``<img>`` holding its bytes (a ``data:`` URI), its name as the alt text."""
    kind = IMAGE_TYPES.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"{path}: a report page embeds {', '.join(IMAGE_TYPES)} images only")
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:{kind};base64,{data}" alt="{html.escape(path.name)}">'


def html_page(title: str, markdown: str, images: Sequence[Path] = ()) -> str:
    """One self-contained HTML page (no external file, script or style): ``title``, the tables of ``markdown``
    (:func:`markdown_html`), then each of ``images`` embedded."""
    parts = [markdown_html(markdown), *(image_html(Path(image)) for image in images)]
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>", f"<style>\n{HTML_STYLE}\n</style>", "</head>", "<body>",
        f"<h1>{html.escape(title)}</h1>", *parts, "</body>", "</html>", ""])


# -- the planned seeds --------------------------------------------------------------------------------------
def planned_seeds(value: str | None) -> int | None:
    """The parent's ``seeds`` param: a count (``"3"``) or the seeds (``"[0, 1, 2]"``, ``"0,1,2"``)."""
    if value is None or not value.strip():
        return None
    if value.strip().isdigit():
        return int(value)
    try:
        seeds = json.loads(value)
    except ValueError:
        seeds = [part for part in value.split(",") if part.strip()]
    return len(seeds) if isinstance(seeds, list) else None


# -- a study's results, for its tracking parent run ------------------------------------------------------------
def metric_part(text: str) -> str:
    """``text`` as one dot-separated part of a metric name: ``->`` becomes ``-``, and every run of other
    characters than letters, digits, ``_`` and ``-`` becomes ``_`` (MLflow names allow ``. / space`` too, but
    those would blur the parts)."""
    return re.sub(r"[^A-Za-z0-9_\-]+", "_", text.replace("->", "-")).strip("_") or "_"


def table_metrics(tables: list[Table]) -> dict[str, float]:
    """Every cell's mean and sample std as metrics named ``SELECTION[.GROUP].ROW.COLUMN.mean`` and ``.std``
    (``oracle.srdc.A-W.mean``, ``labelfree.lambda_scale_0_5.srdc.Avg.mean``); no std for a single seed or Avg."""
    metrics = {}
    for table in tables:
        prefix = [table.selection, *([table.group] if table.group else [])]
        for (row, column), cell in table.cells.items():
            name = ".".join(metric_part(part) for part in [*prefix, row, column])
            metrics[f"{name}.mean"] = cell.mean
            if cell.std is not None:
                metrics[f"{name}.std"] = cell.std
    return metrics


def study_tags(records: list[dict[str, Any]], planned: int | None, paper_table: str) -> dict[str, str]:
    """A study's tags from its records: ``srdc.paper_table`` (``none`` without one), ``srdc.dataset``,
    ``srdc.setting``, ``srdc.seeds_planned`` (default: the seeds in the records) and ``srdc.seeds_finished``
    (the seeds whose every trial has finished)."""
    statuses: dict[str, list[str]] = {}
    for record in records:
        statuses.setdefault(str(record["seed"]), []).append(str(record["status"]))
    finished = sum(all(status == TrialStatus.FINISHED for status in found) for found in statuses.values())
    return {"srdc.paper_table": paper_table or "none",
            "srdc.dataset": ", ".join(sorted({_group(record)[0] for record in records})),
            "srdc.setting": ", ".join(sorted({_group(record)[1] for record in records})),
            "srdc.seeds_planned": str(planned if planned is not None else len(statuses)),
            "srdc.seeds_finished": str(finished)}


@dataclass(frozen=True)
class StudyResults:
    """What a study ends with, for its parent run: the tables of every selection (:data:`srdc.base.SELECTIONS`), each
    selection's tables as Markdown (the study's own table text where it has one), and the study's tags; and what
    its figures (:mod:`srdc.figures.study`) are drawn from: its records (with their epoch histories where known),
    the field of the rows and the grid fields that split the tables."""

    study: str
    tables: list[Table]
    markdown: dict[str, str]
    tags: dict[str, str]
    records: list[dict[str, Any]] = field(default_factory=list)
    rows: str = "variant"
    split: tuple[str, ...] = ()

    @property
    def printed(self) -> str:
        """The tables the study prints at its end (:data:`srdc.base.PRINTED_SELECTIONS`): its parent run's
        description."""
        return "\n".join(self.markdown[selection] for selection in PRINTED_SELECTIONS)

    @property
    def metrics(self) -> dict[str, float]:
        """Every cell's mean and std (:func:`table_metrics`)."""
        return table_metrics(self.tables)

    def files(self, images: Sequence[Path] = ()) -> dict[str, str]:
        """File name (:data:`RESULT_FILES`) -> content: every selection's tables as Markdown and as a
        self-contained HTML page of that Markdown that embeds ``images`` (the study's figures) after it, and the
        mean±std tables as CSV and LaTeX (also for a study that prints tables of its own)."""
        markdown = "\n".join(self.markdown[selection] for selection in SELECTIONS)
        return {RESULT_FILES["md"]: markdown, RESULT_FILES["csv"]: render(self.tables, "csv"),
                RESULT_FILES["latex"]: render(self.tables, "latex"),
                RESULT_FILES["html"]: html_page(f"Study {self.study}", markdown, images)}


def study_results(records: list[dict[str, Any]], study: str, rows: str = "variant", planned: int | None = None,
                  split: Sequence[str] = (), paper_table: str = "",
                  markdown: dict[str, str] | None = None) -> StudyResults:
    """A study's results from its records: :func:`grouped_tables` of every selection, their Markdown (``markdown``,
    selection -> text, when the study prints its own tables), :func:`study_tags`, and the records themselves."""
    tables = {selection: grouped_tables(records, selection, rows, planned, study, split) for selection in SELECTIONS}
    texts = markdown or {selection: render(tables[selection], "md") for selection in SELECTIONS}
    return StudyResults(study, [table for selection in SELECTIONS for table in tables[selection]], texts,
                        study_tags(records, planned, paper_table), list(records), rows, tuple(split))
