"""A study's results tables rendered (:func:`render`: Markdown, CSV, LaTeX, or a self-contained HTML page), and
everything a study ends with (:func:`study_results`: the tables of every selection in every format, summary
metrics, tags) for its tracking parent run: pure functions of trial records and of the tables
(:mod:`srdc.tables`, their arithmetic). Where the records come from (a tracking store, Tune's results) is the
caller's business: :mod:`srdc.report_cli` is the ``srdc-report`` command, reading them from the tracking store.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from srdc.base import TrialStatus, printed_selections, tabled_selections
from srdc.tables import Cell, Table, dataset_setting, grouped_tables
from srdc.validator_report import validator_report

FORMATS = ("md", "csv", "latex", "html")
# what a study's results are saved as: format -> file name
RESULT_FILES = {"md": "tables.md", "csv": "tables.csv", "latex": "tables.tex", "html": "report.html"}
# the decimals of a study's summary metrics: the CSV's, enough for any table (no float noise on the parent run)
METRIC_DECIMALS = 4
# the image types a report page embeds, by file suffix
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}


# -- rendering ---------------------------------------------------------------------------------------------
def cell_text(cell: Cell | None, planned: int, plus_minus: str = "±") -> str:
    """``"94.8±0.3 n=2 (SRDC paper 95.7, -0.9)"`` (the reference number named by its paper); empty for a missing
    cell."""
    if cell is None:
        return ""
    text = f"{cell.mean:.1f}"
    if cell.std is not None:
        text += f"{plus_minus}{cell.std:.1f}"
    if cell.n < planned:
        text += f" n={cell.n}"
    if cell.paper is not None:
        text += f" ({cell.source} {cell.paper:.1f}, {cell.diff:+.1f})"
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
    writer.writerow(["table", "row", "column", "mean", "std", "n", "planned", "paper", "diff", "selection",
                     "paper_source"])
    for table in tables:
        for row in table.rows:
            for column in table.columns:
                cell = table.cells.get((row, column))
                if cell is not None:
                    writer.writerow([table.title, row, column, _number(cell.mean), _number(cell.std), cell.n,
                                     table.planned, _number(cell.paper), _number(cell.diff), table.selection,
                                     cell.source])
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


def stand_ins_param(value: str | None) -> dict[str, str]:
    """The parent's ``stand_ins`` param (a smoke test's): JSON, stand-in task -> the study's task; ``{}`` without."""
    return json.loads(value) if value else {}


# -- a study's results, for its tracking parent run ------------------------------------------------------------
def metric_part(text: str) -> str:
    """``text`` as one dot-separated part of a metric name: ``->`` becomes ``-``, and every run of other
    characters than letters, digits, ``_`` and ``-`` becomes ``_`` (MLflow names allow ``. / space`` too, but
    those would blur the parts)."""
    return re.sub(r"[^A-Za-z0-9_\-]+", "_", text.replace("->", "-")).strip("_") or "_"


def table_metrics(tables: list[Table]) -> dict[str, float]:
    """Every cell's mean and sample std as metrics named ``SELECTION[.GROUP].ROW.COLUMN.mean`` and ``.std``
    (``oracle.srdc.A-W.mean``, ``labelfree.lambda_scale_0_5.srdc.Avg.mean``), rounded to :data:`METRIC_DECIMALS`;
    no std for a single seed or Avg."""
    metrics = {}
    for table in tables:
        prefix = [table.selection, *([table.group] if table.group else [])]
        for (row, column), cell in table.cells.items():
            name = ".".join(metric_part(part) for part in [*prefix, row, column])
            metrics[f"{name}.mean"] = round(cell.mean, METRIC_DECIMALS)
            if cell.std is not None:
                metrics[f"{name}.std"] = round(cell.std, METRIC_DECIMALS)
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
            "srdc.dataset": ", ".join(sorted({dataset_setting(record)[0] for record in records})),
            "srdc.setting": ", ".join(sorted({dataset_setting(record)[1] for record in records})),
            "srdc.seeds_planned": str(planned if planned is not None else len(statuses)),
            "srdc.seeds_finished": str(finished)}


@dataclass(frozen=True)
class StudyResults:
    """What a study ends with, for its parent run: the tables of every selection (:func:`srdc.base.tabled_selections`:
    an ``inductive`` study's add the released code's further accuracies), each selection's tables as Markdown (the
    study's own table text where it has one), and the study's tags; and what its figures (:mod:`srdc.figures.study`)
    are drawn from: its records (with their epoch histories where known), the field of the rows and the grid fields
    that split the tables; ``validators``: the label-free validators judged against the oracle over its runs
    (:func:`srdc.validator_report.validator_report`, when the records carry their histories), after the tables in
    the Markdown and HTML files."""

    study: str
    tables: list[Table]
    markdown: dict[str, str]
    tags: dict[str, str]
    records: list[dict[str, Any]] = field(default_factory=list)
    rows: str = "variant"
    split: tuple[str, ...] = ()
    inductive: bool = False
    validators: str = ""

    @property
    def printed(self) -> str:
        """The tables the study prints at its end (:func:`srdc.base.printed_selections`): its parent run's
        description."""
        return "\n".join(self.markdown[selection] for selection in printed_selections(self.inductive))

    @property
    def metrics(self) -> dict[str, float]:
        """Every cell's mean and std (:func:`table_metrics`)."""
        return table_metrics(self.tables)

    def files(self, images: Sequence[Path] = ()) -> dict[str, str]:
        """File name (:data:`RESULT_FILES`) -> content: every selection's tables as Markdown and as a
        self-contained HTML page of that Markdown that embeds ``images`` (the study's figures) after it, and the
        mean±std tables as CSV and LaTeX (also for a study that prints tables of its own)."""
        markdown = "\n".join([*(self.markdown[selection] for selection in tabled_selections(self.inductive)),
                              *filter(None, [self.validators])])
        return {RESULT_FILES["md"]: markdown, RESULT_FILES["csv"]: render(self.tables, "csv"),
                RESULT_FILES["latex"]: render(self.tables, "latex"),
                RESULT_FILES["html"]: html_page(f"Study {self.study}", markdown, images)}


def study_results(records: list[dict[str, Any]], study: str, rows: str = "variant", planned: int | None = None,
                  split: Sequence[str] = (), paper_table: str = "",
                  markdown: dict[str, str] | None = None) -> StudyResults:
    """A study's results from its records: :func:`grouped_tables` of every selection, their Markdown (``markdown``,
    selection -> text, when the study prints its own tables), :func:`study_tags`, and the records themselves."""
    selections = tabled_selections(is_inductive(records))
    tables = {selection: grouped_tables(records, selection, rows, planned, study, split) for selection in selections}
    texts = markdown or {selection: render(tables[selection], "md") for selection in selections}
    return StudyResults(study, [table for selection in selections for table in tables[selection]], texts,
                        study_tags(records, planned, paper_table), list(records), rows, tuple(split),
                        is_inductive(records), validator_report(records, f"Study {study}"))


def is_inductive(records: Sequence[dict[str, Any]]) -> bool:
    """Whether the records are of an inductive study (its tables then add :data:`srdc.base.INDUCTIVE_SELECTIONS`)."""
    return any(dataset_setting(record)[1] == "inductive" for record in records)
