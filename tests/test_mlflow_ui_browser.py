"""The MLflow UI on a real study, in a real browser: ``mlflow_server/start.sh`` (SQLite store) on 127.0.0.1, Table 1's
smoke study (5 variants, one seed) logging to it, and Debian's Chromium driven headless by Playwright.

* the link the study prints (its ``browse:`` line, taken from its output), opened on a first visit, lands on the
  experiment's runs table, not its GenAI overview: the study's parent run alone, and its five child runs nested
  under it once expanded, with their ``acc_best_oracle`` and ``acc_labelfree`` in the columns picked for them;
* the parent run's page shows the oracle table in its description cell by cell as the run's
  ``mlflow.note.content`` holds it, and its ``results/`` artifacts, ``tables.md`` rendered;
* a child run's page draws its ``acc_target`` chart with one point per logged epoch, and each of its figures
  (``figures/*.png``), picked in the artifact tree, loads in the viewer as an image of the PNG's size;
* the compare view of the five variants' runs opens with their names, and "Show diff only" leaves the ``variant``
  param and hides those they share.

A screenshot of every page goes to the test's temporary folder. With ``SRDC_UI_SCREENSHOTS=FOLDER`` the four of
docs/mlflow_ui.md are written to FOLDER too (``mlflow_ui_*.png``, 1280x800, each under 300 KB)::

    SRDC_UI_SCREENSHOTS=docs/images python -m pytest tests/test_mlflow_ui_browser.py

Without /usr/bin/chromium (``apt-get install chromium``) or Playwright (``pip install -e '.[dev]'``) the test
skips, saying why; with ``CI=true`` it fails instead.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from mlflow import MlflowClient
from study_helpers import load_declaration

from srdc.harness.main import main
from srdc.report import RESULT_FILES
from srdc.tracking import MLflowTracker

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 800}
# MLflow 3.17's UI opens its Assistant panel on a first visit; a user closes it once, and the browser remembers
# that (in localStorage, as set here for every page)
BROWSER_SETTINGS = {"mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": "true", "mlflow.assistant.panelOpen_v1": "false"}
# the UI's view of an experiment when a link does not say (GenAI on a first visit): after the printed link, the test
# picks "Model training" as docs/mlflow_ui.md says, and the browser remembers it (localStorage)
WORKFLOW_SETTING = ("mlflow.workflowType_v1", '"machine_learning"')
WAIT_MS = 60_000  # a page's content may take long on a loaded machine; only a page that never shows it fails
SCREENSHOTS_ENV = "SRDC_UI_SCREENSHOTS"
SCREENSHOT_MAX_BYTES = 300_000
STUDY = "ablation_office31-smoke"
EXPERIMENT = "ui-browser"
# every trial draws its figures (a smoke trial's drawing is over the default budget: the worker's first one draws)
ARGV = ["--smoke-test", "--tasks", "A->W", "--seeds", "0", "--cpus-per-trial", "0.5", "--max-concurrent", "4",
        "--experiment", EXPERIMENT, "--set", "figures_budget=1e9"]
VARIANTS = 5
NAME_COLUMN = "attributes.`Run Name`"  # col-id of the runs list's columns
METRIC_COLUMNS = ("acc_best_oracle", "acc_labelfree")  # shown in the runs list, as docs/mlflow_ui.md suggests
HIDDEN_COLUMNS = ("Dataset", "Source", "Models")  # shown by default, empty for a study's runs
DOCS_FIGURE = "curves"  # the child's figure shown in docs/mlflow_ui.md


def first_markdown_table(text: str) -> list[list[str]]:
    """The cells of the first Markdown table in ``text``, row by row, its header first (no separator row)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    table = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        if not re.fullmatch(r"[|\-: ]+", line):
            table.append([cell.strip() for cell in line.strip("|").split("|")])
    return table


def figure_sizes(client: MlflowClient, run_id: str, folder: Path) -> dict[str, tuple[int, int]]:
    """The run's ``figures/*.png`` artifacts: path -> (width, height) of the PNG, downloaded into ``folder``."""
    from PIL import Image

    sizes = {}
    for item in client.list_artifacts(run_id, "figures"):
        if item.path.endswith(".png"):
            with Image.open(client.download_artifacts(run_id, item.path, str(folder))) as image:
                sizes[item.path] = image.size
    return sizes


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Chromium, with Playwright to drive it; else a skip (a failure under CI=true) naming what is missing. Asked
    first, before the MLflow server and Ray start."""
    missing = None if CHROMIUM.exists() else f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if importlib.util.find_spec("playwright") is None:
        missing = "Playwright is not installed (pip install -e '.[dev]')"
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing}; CI=true needs it")
        pytest.skip(missing)
    return CHROMIUM


@pytest.fixture
def page(chromium: Path) -> Iterator[Page]:
    """A page of headless Chromium (1280x800) with the UI settings of :data:`BROWSER_SETTINGS`."""
    from playwright.sync_api import sync_playwright

    settings = "".join(f"localStorage.setItem({json.dumps(key)}, {json.dumps(value)});"
                       for key, value in BROWSER_SETTINGS.items())
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), headless=True, args=FLAGS)
        try:
            context = browser.new_context(viewport=VIEWPORT)
            context.add_init_script(settings)
            opened = context.new_page()
            opened.set_default_timeout(WAIT_MS)
            yield opened
        finally:
            browser.close()


class Screenshots:
    """Screenshots into ``folder`` and, those named for the docs, into ``docs`` (when given) as ``mlflow_ui_*.png``."""

    def __init__(self, folder: Path, docs: Path | None) -> None:
        self.folder, self.docs = folder, docs

    def take(self, page: Page, name: str, for_docs: bool = True) -> None:
        page.mouse.move(0, 0)  # no hover highlight in the picture
        path = self.folder / f"{name}.png"
        page.screenshot(path=path)
        if for_docs and self.docs is not None:
            assert path.stat().st_size < SCREENSHOT_MAX_BYTES, f"{name}.png is {path.stat().st_size} bytes"
            self.docs.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, self.docs / f"mlflow_ui_{name}.png")


def check_printed_link(page: Page, browse: str, children: list[Any], shots: Screenshots) -> None:
    """The printed link, on a first visit (no view remembered), opens the runs table, not the GenAI overview: the
    parent run alone; expanded, its children under it, whose summary metrics show in the columns picked for them
    (:data:`METRIC_COLUMNS`, instead of the empty :data:`HIDDEN_COLUMNS`)."""
    from playwright.sync_api import expect

    page.goto(browse)  # a fresh browser context: no view remembered
    names = page.locator(f"[role=gridcell][col-id='{NAME_COLUMN}'] a")
    expect(names).to_have_text([STUDY], timeout=WAIT_MS)
    assert page.url == browse  # no redirect: not to the GenAI overview, nor one dropping the filter
    page.get_by_role("button", name="Columns").click()
    for column in (*HIDDEN_COLUMNS, *METRIC_COLUMNS):
        page.get_by_role("dialog").get_by_text(column, exact=True).click()
    page.keyboard.press("Escape")
    parent_row = page.locator("[role=row]").filter(has_text=STUDY)
    parent_row.locator("button[data-component-id*='runnamecellrenderer']").click()  # the row's expand button
    expect(names).to_have_count(1 + len(children), timeout=WAIT_MS)
    assert sorted(names.all_inner_texts()) == sorted([STUDY, *(run.info.run_name for run in children)])
    for run in children:  # a row's cells lie in two row elements (pinned columns, the rest), one row-index
        index = page.locator("[role=row]").filter(has=names.get_by_text(run.info.run_name, exact=True)) \
            .get_attribute("row-index")
        for key in METRIC_COLUMNS:
            cell = page.locator(f"[role=row][row-index='{index}'] [col-id='metrics.`{key}`']")
            assert float(cell.inner_text()) == pytest.approx(run.data.metrics[key], abs=1e-3), (run.info.run_name, key)
    shots.take(page, "experiment")


def first_table_on(page: Page, rows: int) -> list[list[str]]:
    """The cells of the page's first table (an HTML one or an ARIA one), row by row, once it has ``rows`` rows."""
    from playwright.sync_api import expect

    table = page.get_by_role("table").first
    expect(table.get_by_role("row")).to_have_count(rows, timeout=WAIT_MS)
    return [row.get_by_role("columnheader").or_(row.get_by_role("cell")).all_inner_texts()
            for row in table.get_by_role("row").all()]


def check_parent_page(page: Page, run_page: str, parent: Any, shots: Screenshots) -> None:
    """The parent run's page: its description holds the oracle table cell by cell, and its artifacts the
    ``results/`` files, whose Markdown the viewer renders."""
    from playwright.sync_api import expect

    expected = first_markdown_table(parent.data.tags["mlflow.note.content"])
    assert len(expected) == 1 + VARIANTS
    page.goto(run_page)
    assert first_table_on(page, len(expected)) == expected  # the description's first table: the oracle selection
    shots.take(page, "parent")
    markdown = f"results/{RESULT_FILES['md']}"
    page.goto(f"{run_page}/artifacts/{markdown}")
    expect(page.get_by_text(markdown, exact=True)).to_be_visible(timeout=WAIT_MS)  # the viewer's title
    for name in RESULT_FILES.values():
        expect(page.get_by_text(name, exact=True)).to_be_visible(timeout=WAIT_MS)  # the artifact tree
    assert first_table_on(page, len(expected)) == expected
    shots.take(page, "parent_results", for_docs=False)


def check_child_charts(page: Page, run_page: str, points: int, shots: Screenshots) -> None:
    """The child's ``acc_target`` chart draws ``points`` points (its logged epochs)."""
    from playwright.sync_api import expect

    page.goto(f"{run_page}/model-metrics")
    page.get_by_placeholder("Search metric charts").fill("acc_target")
    chart = page.locator(".js-plotly-plot")
    expect(chart).to_have_count(1, timeout=WAIT_MS)
    expect(chart.locator("path.point")).to_have_count(points, timeout=WAIT_MS)
    shots.take(page, "child", for_docs=False)


def check_child_figures(page: Page, run_page: str, figures: dict[str, tuple[int, int]], shots: Screenshots) -> None:
    """Each of the child's figures (artifact path -> its PNG's width and height), picked in the artifact tree, shows
    in the viewer as a loaded image of that size."""
    from playwright.sync_api import expect

    assert figures, "the child run has no figures/*.png artifacts"
    page.goto(f"{run_page}/artifacts")
    page.get_by_text("figures", exact=True).click()  # open the folder in the artifact tree
    for path, (width, height) in figures.items():
        before = page.eval_on_selector_all("img[src^='blob:']", "images => images.map(image => image.src)")
        page.get_by_text(Path(path).name, exact=True).click()
        expect(page.get_by_text(path, exact=True)).to_be_visible(timeout=WAIT_MS)  # the viewer's title
        page.wait_for_function(  # a new image in the viewer, decoded, with the PNG's pixels
            "([width, height, before]) => [...document.querySelectorAll(\"img[src^='blob:']\")].some(image => "
            "!before.includes(image.src) && image.complete && image.naturalWidth === width "
            "&& image.naturalHeight === height)", arg=[width, height, before], timeout=WAIT_MS)
        shots.take(page, f"figure_{Path(path).stem}", for_docs=Path(path).stem == DOCS_FIGURE)


def check_compare_view(page: Page, url: str, experiment_id: str, children: list[Any], shots: Screenshots) -> None:
    """The compare view of the children opens with their names; its parameters, differences only, hide those
    they share and show the variants."""
    from playwright.sync_api import expect

    query = urllib.parse.urlencode({"runs": json.dumps([run.info.run_id for run in children]),
                                    "experiments": json.dumps([experiment_id])})
    page.goto(f"{url}/#/compare-runs?{query}")
    expect(page.get_by_text(f"Comparing {len(children)} Runs from 1 Experiment")).to_be_visible(timeout=WAIT_MS)
    for run in children:
        expect(page.get_by_text(run.info.run_name, exact=True).first).to_be_visible(timeout=WAIT_MS)
    same = page.locator("tr").filter(has=page.get_by_text("batch_size", exact=True))  # a param they all share
    expect(same).to_have_count(1, timeout=WAIT_MS)
    page.get_by_role("switch").first.click()  # the parameters' "Show diff only"
    expect(same).to_have_count(0, timeout=WAIT_MS)
    variants = page.locator("tr").filter(has=page.get_by_text("variant", exact=True)).first  # params, then tags
    assert variants.locator("td, th").all_inner_texts()[1:] == [run.data.params["variant"] for run in children]
    page.get_by_label("Toggle sidebar").click()  # room for the fifth run's column
    page.get_by_text("Run details", exact=True).evaluate("element => element.scrollIntoView()")
    shots.take(page, "compare")


@pytest.mark.slow
def test_the_mlflow_ui_shows_a_study_its_results_charts_figures_and_comparison(
        chromium, mlflow_server, ray_cluster, page, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    code = main(load_declaration("ablation_office31"), [*ARGV, "--storage-path", str(tmp_path / "ray"),
                                                        "--tracking-uri", mlflow_server])
    out = capsys.readouterr().out
    assert code == 0, out
    client = MlflowClient(mlflow_server)
    experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    (parent,) = client.search_runs([experiment_id], "tags.`srdc.role` = 'parent'")
    children = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
                                  order_by=["attributes.run_name"])
    assert len(children) == VARIANTS
    (browse,) = [line.removeprefix("  browse: ") for line in out.splitlines() if line.startswith("  browse: ")]
    MLflowTracker(mlflow_server, EXPERIMENT).attach_study("another study", {})  # which the link leaves out
    docs = os.environ.get(SCREENSHOTS_ENV)
    shots = Screenshots(tmp_path, Path(docs) if docs else None)

    check_printed_link(page, browse, children, shots)
    page.evaluate(f"localStorage.setItem({json.dumps(WORKFLOW_SETTING[0])}, {json.dumps(WORKFLOW_SETTING[1])})")
    check_parent_page(page, f"{mlflow_server}/#/experiments/{experiment_id}/runs/{parent.info.run_id}", parent, shots)
    (srdc,) = [run for run in children if run.data.params["variant"] == "srdc"]
    run_page = f"{mlflow_server}/#/experiments/{experiment_id}/runs/{srdc.info.run_id}"
    check_child_charts(page, run_page, len(client.get_metric_history(srdc.info.run_id, "acc_target")), shots)
    check_compare_view(page, mlflow_server, experiment_id, children, shots)
    check_child_figures(page, run_page, figure_sizes(client, srdc.info.run_id, tmp_path / "figures"), shots)
