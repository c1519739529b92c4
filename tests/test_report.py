"""Tables: aggregation on canned records (expected numbers worked out by hand, srdc.tables), rendering
(srdc.report), the paper's numbers; and the srdc-report command line (srdc.report_cli) against an embedded SQLite
MLflow store."""

import base64
import csv
import html
import io
import json
import math
import re
import socket

import pytest
from mlflow import MlflowClient
from mlflow.utils.validation import _validate_metric_name

from srdc.errors import SRDCInputError
from srdc.paper_results import TABLES, Reference, paper_cell, paper_reference, paper_task, paper_value
from srdc.report import (
    RESULT_FILES,
    cell_text,
    html_page,
    planned_seeds,
    render,
    study_results,
    study_tags,
    table_metrics,
)
from srdc.report_cli import main
from srdc.tables import aggregate, aggregate_study, grouped_tables, with_stand_ins
from srdc.tracking import MLflowTracker


@pytest.fixture(autouse=True)
def fast_http(monkeypatch):
    """What ``main`` sets for itself, undone after each test."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")


def record(variant: str, task: tuple[str, str], seed: int, oracle: float, status: str = "FINISHED", **extra):
    """A trial as the report sees it: config params, task, status and the summary accuracies."""
    return {"dataset": "office31", "setting": "transductive", "variant": variant, "source": task[0],
            "target": task[1], "task": f"{task[0]}->{task[1]}", "seed": str(seed), "status": status,
            "acc_best_oracle": oracle, "acc_labelfree": oracle - 1.0, "acc_last": oracle - 2.0,
            "labelfree_selector": "infomax", **extra}


AW, WA = ("amazon", "webcam"), ("webcam", "amazon")
RECORDS = [
    # srdc A->W: 80, 82, 84 -> mean 82.0, sample std sqrt((4 + 0 + 4) / 2) = 2.0; paper 95.7 -> -13.7
    record("srdc", AW, 0, 80.0), record("srdc", AW, 1, 82.0), record("srdc", AW, 2, 84.0),
    # srdc W->A: 70, 74 finished (seed 2 still running) -> 72.0 ± sqrt(8) = 2.83, n=2; paper 77.1 -> -5.1
    record("srdc", WA, 0, 70.0), record("srdc", WA, 1, 74.0), record("srdc", WA, 2, 99.0, status="RUNNING"),
    # source_only A->W: 60, 61, 65 -> 62.0 ± sqrt((4 + 1 + 9) / 2) = sqrt(7) = 2.65; paper 77.8 -> -15.8
    record("source_only", AW, 0, 60.0), record("source_only", AW, 1, 61.0), record("source_only", AW, 2, 65.0),
    # source_only W->A: nothing finished -> empty cell, no Avg
    record("source_only", WA, 0, 50.0, status="FAILED"),
    # a variant the paper does not have, one seed
    record("srdc_wide", AW, 0, 90.0),
]


def cells(table):
    return {key: (round(c.mean, 4), None if c.std is None else round(c.std, 4), c.n, c.paper)
            for key, c in table.cells.items()}


# -- aggregation ---------------------------------------------------------------------------------------------
def test_aggregate_mean_sample_std_n_and_paper_numbers_by_hand():
    table = aggregate(RECORDS, "oracle", planned=3, study="demo")
    assert table.rows == ["source_only", "srdc", "srdc_wide"]
    assert table.columns == ["A->W", "W->A", "Avg"]  # our domain names in the paper's letters and order
    assert cells(table) == {
        ("srdc", "A->W"): (82.0, 2.0, 3, 95.7),
        ("srdc", "W->A"): (72.0, round(math.sqrt(8), 4), 2, 77.1),
        ("srdc", "Avg"): (77.0, None, 2, None),  # (82 + 72) / 2; the paper has no Avg over these two tasks
        ("source_only", "A->W"): (62.0, round(math.sqrt(7), 4), 3, 77.8),
        ("srdc_wide", "A->W"): (90.0, None, 1, None),
    }
    assert table.cells["srdc", "A->W"].diff == pytest.approx(-13.7)


def test_selection_picks_the_metric_and_is_named_in_the_caption():
    oracle = aggregate(RECORDS, "oracle", planned=3)
    labelfree = aggregate(RECORDS, "labelfree", planned=3)
    last = aggregate(RECORDS, "last", planned=3)
    assert (labelfree.cells["srdc", "A->W"].mean, last.cells["srdc", "A->W"].mean) == (81.0, 80.0)
    assert "oracle = epoch chosen with target labels (paper protocol, optimistic)" in oracle.caption
    assert "labelfree = epoch chosen without target labels by infomax" in labelfree.caption
    assert "last = final epoch" in last.caption
    for table in (oracle, labelfree, last):
        assert "sample std, ddof=1" in table.caption
        assert "only k of the 3 planned seeds" in table.caption  # some cells hold fewer than 3 seeds
    complete = aggregate(RECORDS, "oracle", planned=1)
    assert all(cell.n >= 1 for cell in complete.cells.values()) and "planned seeds" not in complete.caption
    assert "Table 1/6" in oracle.caption


def test_the_caption_states_the_budget_seeds_selection_and_papers():
    # the bug report's run: 2 epochs, 1 seed -- no "mean±std over seeds" for one run
    single = aggregate([dict(r, epochs="2") for r in RECORDS if r["seed"] == "0"], "oracle", planned=1)
    assert "Target accuracy (%) after 2 epochs of training, 1 seed per cell (a single run: no mean or std over " \
           "seeds)." in single.caption
    assert "mean±std" not in single.caption and "sample std" not in single.caption
    assert "Model selection: oracle = epoch chosen with target labels" in single.caption
    assert "In parentheses: the number the paper named published (SRDC paper: Tang, Chen and Jia, CVPR 2020, " \
           "Table 1/6, epoch chosen with target labels) and ours minus it." in single.caption
    assert ".py" not in single.caption  # no source file: what a reader sees names papers, not our code
    three = aggregate([dict(r, epochs=200) for r in RECORDS], "last", planned=3)
    assert "after 200 epochs of training, mean±std over 3 seeds per cell (sample std, ddof=1); n=k: only k of " \
           "the 3 planned seeds have finished." in three.caption
    assert "after 1 epoch of training" in aggregate([dict(RECORDS[0], epochs=1)]).caption
    assert "epochs" not in aggregate(RECORDS, planned=3).caption  # records that do not say: no budget claimed
    mixed = aggregate([dict(RECORDS[0], epochs=5), dict(RECORDS[1], epochs=2)], planned=2)
    assert "after 2/5 epochs of training" in mixed.caption


def test_a_smoke_tests_columns_name_the_tasks_they_stand_in_for():
    stand_ins = {"digits->digits_photo": "A->W", "digits_photo->digits": "W->A"}
    records = [dict(r, dataset="embedded", task=f"{a}->{b}") for r, (a, b) in
               ((record("srdc", AW, 0, 80.0), ("digits", "digits_photo")),
                (record("srdc", WA, 0, 70.0), ("digits_photo", "digits")),
                (record("srdc", AW, 1, 60.0), ("digits", "digits_color")))]  # a task without a stand-in stays
    table = aggregate(with_stand_ins(records, stand_ins))
    assert table.columns == ["A->W (digits->digits_photo)", "W->A (digits_photo->digits)", "digits->digits_color",
                             "Avg"]
    assert records[0]["task"] == "digits->digits_photo"  # the records themselves are left as they were
    assert "| variant | A->W (digits->digits_photo) | W->A (digits_photo->digits) |" in render([table], "md")


def test_paper_average_only_when_the_task_set_is_the_papers():
    # Table 1's four tasks (the paper's ablation): 90, 95, 75, 80 -> Avg 85.0 against the paper's 82.1
    ours = {("amazon", "webcam"): 90.0, ("amazon", "dslr"): 95.0, ("dslr", "amazon"): 75.0,
            ("webcam", "amazon"): 80.0}
    records = [record("srdc_no_struct", task, 0, value) for task, value in ours.items()]
    table = aggregate(records, planned=1)
    assert table.columns == ["A->W", "A->D", "D->A", "W->A", "Avg"]
    avg = table.cells["srdc_no_struct", "Avg"]
    assert (avg.mean, avg.paper) == (85.0, 82.1)
    assert avg.diff == pytest.approx(2.9)
    assert table.cells["srdc_no_struct", "A->W"].paper == 87.3


def test_other_rows_are_ordered_numerically_and_get_no_paper_numbers():
    records = [record("srdc", AW, seed, 80.0 + seed, lambda_scale=scale)
               for scale in ("2.0", "0.5", "10.0") for seed in (0, 1)]
    table = aggregate(records, rows="lambda_scale")
    assert table.rows == ["0.5", "2.0", "10.0"]
    assert table.planned == 2  # no planned count given: the most seeds any cell has
    assert cells(table)[("0.5", "A->W")] == (80.5, round(math.sqrt(0.5), 4), 2, None)


def test_a_seed_twice_in_a_cell_asks_for_rows():
    records = [record("srdc", AW, 0, 80.0, lambda_scale="1.0"), record("srdc", AW, 0, 81.0, lambda_scale="2.0")]
    with pytest.raises(SRDCInputError, match="--rows"):
        aggregate(records)


def test_one_table_per_dataset_and_setting():
    inductive = [dict(r, setting="inductive") for r in RECORDS[:3]]
    tables = aggregate_study(RECORDS + inductive, planned=3)
    assert [table.title for table in tables] == ["office31, inductive, oracle selection (target labels)",
                                                 "office31, transductive, oracle selection (target labels)"]
    assert tables[0].cells["srdc", "A->W"].paper == 91.9  # Table 2, inductive


@pytest.mark.parametrize(("text", "planned"), [("3", 3), ("[0, 1, 2]", 3), ("0,1", 2), (None, None)])
def test_planned_seeds_from_the_parent_param(text, planned):
    assert planned_seeds(text) == planned


# -- rendering -----------------------------------------------------------------------------------------------
def test_markdown_cells_show_std_n_and_the_paper():
    text = render([aggregate(RECORDS, planned=3, study="demo")], "md")
    lines = text.splitlines()
    assert lines[0] == "**Study demo: office31, transductive, oracle selection (target labels)**"
    assert "| variant | A->W | W->A | Avg |" in lines
    assert "| source_only | 62.0±2.6 (SRDC paper 77.8, -15.8) | — | — |" in lines
    assert "| srdc | 82.0±2.0 (SRDC paper 95.7, -13.7) | 72.0±2.8 n=2 (SRDC paper 77.1, -5.1) | 77.0 n=2 |" in lines
    assert "| srdc_wide | 90.0 n=1 | — | — |" in lines
    assert "Model selection: oracle = epoch chosen with target labels (paper protocol, optimistic)" in text


def test_csv_one_line_per_cell_with_the_caption_as_comment():
    text = render([aggregate(RECORDS, "labelfree", planned=3)], "csv")
    assert text.startswith("# office31, transductive, label-free selection. Target accuracy")
    rows = list(csv.DictReader(line for line in io.StringIO(text) if not line.startswith("#")))
    assert len(rows) == 5
    srdc = next(row for row in rows if (row["row"], row["column"]) == ("srdc", "A->W"))
    assert srdc == {"table": "office31, transductive, label-free selection", "row": "srdc", "column": "A->W",
                    "mean": "81.0000", "std": "2.0000", "n": "3", "planned": "3", "paper": "95.7000",
                    "diff": "-14.7000", "selection": "labelfree", "paper_source": "SRDC paper"}


def test_latex_escapes_and_captions():
    text = render([aggregate(RECORDS, "last", planned=3)], "latex")
    assert r"\caption{office31, transductive, last epoch. Target accuracy (\%), mean$\pm$std" in text
    assert "last = final epoch" in text
    assert r"variant & A$\to$W & W$\to$A & Avg \\" in text
    assert r"srdc & 80.0$\pm$2.0 (SRDC paper 95.7, -15.7) & 70.0$\pm$2.8 n=2 (SRDC paper 77.1, -7.1) & " \
           r"75.0 n=2 \\" in text
    assert r"source\_only & 60.0$\pm$2.6 (SRDC paper 77.8, -17.8) & -- & -- \\" in text


def test_each_selection_has_a_title_of_its_own():
    titles = [aggregate(RECORDS, selection, planned=3, study="demo").title for selection in ("oracle", "labelfree",
                                                                                               "last")]
    assert titles == ["Study demo: office31, transductive, oracle selection (target labels)",
                      "Study demo: office31, transductive, label-free selection",
                      "Study demo: office31, transductive, last epoch"]
    markdown = render([aggregate(RECORDS, "oracle", planned=3), aggregate(RECORDS, "labelfree", planned=3)], "md")
    assert [line for line in markdown.splitlines() if line.startswith("**")] == [
        "**office31, transductive, oracle selection (target labels)**", "**office31, transductive, label-free "
                                                                          "selection**"]


def test_html_is_one_self_contained_page_with_every_cell_and_caption():
    tables = [aggregate(RECORDS, selection, planned=3, study="demo") for selection in ("oracle", "labelfree")]
    page = render(tables, "html", "Study demo")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<title>Study demo</title>" in page and "<h1>Study demo</h1>" in page
    # nothing outside the page: no links, scripts, style sheets or remote images
    assert not re.search(r"<script|<link|<iframe|\bsrc=|\bhref=|url\(|https?://", page)
    for table in tables:
        assert f"<h2>{html.escape(table.title)}</h2>" in page
        assert f'<p class="caption">{html.escape(table.caption)}</p>' in page
        header = "".join(f"<th>{html.escape(text)}</th>" for text in [table.row_label, *table.columns])
        assert f"<tr>{header}</tr>" in page
        for row in table.rows:
            texts = [cell_text(table.cells.get((row, column)), table.planned) or "—" for column in table.columns]
            assert "<tr>" + "".join(f"<td>{html.escape(text)}</td>" for text in [row, *texts]) + "</tr>" in page
    assert "<td>72.0±2.8 n=2 (SRDC paper 77.1, -5.1)</td>" in page  # one cell, by hand
    assert page.count("<table>") == 2


def test_html_page_embeds_the_given_images(tmp_path):
    figure = tmp_path / "ablation.png"
    figure.write_bytes(b"\x89PNG\r\n\x1a\nnot really a picture")
    page = html_page("Study demo", render([aggregate(RECORDS, planned=3)], "md"), [figure])
    (data,) = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="ablation.png">', page)
    assert base64.b64decode(data) == figure.read_bytes()
    assert "<img" not in html_page("Study demo", "")
    with pytest.raises(ValueError, match="png"):
        html_page("Study demo", "", [tmp_path / "figure.tiff"])


def test_metrics_name_every_cell_by_selection_group_row_and_task():
    records = RECORDS + [dict(r, variant="srdc", lambda_scale=2.0) for r in RECORDS[:3]]
    records = [dict(r, lambda_scale=r.get("lambda_scale", 0.5)) for r in records]
    tables = grouped_tables(records, "oracle", planned=3, study="demo", split=["lambda_scale"])
    assert [table.group for table in tables] == ["lambda_scale=0.5", "lambda_scale=2.0"]
    assert tables[0].title == "Study demo lambda_scale=0.5: office31, transductive, oracle selection (target labels)"
    metrics = table_metrics(tables)
    assert metrics["oracle.lambda_scale_0_5.srdc.A-W.mean"] == 82.0  # 80, 82, 84
    assert metrics["oracle.lambda_scale_0_5.srdc.A-W.std"] == 2.0
    assert metrics["oracle.lambda_scale_0_5.srdc.Avg.mean"] == 77.0
    assert metrics["oracle.lambda_scale_2_0.srdc.A-W.mean"] == 82.0
    assert "oracle.lambda_scale_0_5.srdc.Avg.std" not in metrics  # an average over tasks has no std
    assert "oracle.lambda_scale_0_5.srdc_wide.A-W.std" not in metrics  # one seed
    # lambda_scale=0.5: means and stds of source_only/srdc A->W and srdc W->A, the means of srdc Avg and srdc_wide
    # A->W; lambda_scale=2.0 (one task): srdc A->W mean and std, srdc Avg mean
    assert len(metrics) == 8 + 3
    for name in metrics:
        _validate_metric_name(name)  # MLflow's own check: raises for a name it refuses
    plain = table_metrics([aggregate(RECORDS, "labelfree", planned=3)])
    # rounded to 4 decimals, the CSV's: sqrt(7) = 2.64575... is logged as 2.6458
    assert plain["labelfree.srdc.A-W.mean"] == 81.0 and plain["labelfree.source_only.A-W.std"] == 2.6458


def test_the_parent_runs_metrics_carry_no_float_noise():
    # accuracies that a float32 mean made (26.5 as 26.499998..., 11.0 as 11.000000317...) log as the tables show them
    noisy = [record("srdc", AW, 0, 26.499998092651367), record("srdc", WA, 0, 11.00000031789144)]
    metrics = table_metrics([aggregate(noisy, planned=1)])
    assert metrics == {"oracle.srdc.A-W.mean": 26.5, "oracle.srdc.W-A.mean": 11.0, "oracle.srdc.Avg.mean": 18.75}


def test_tags_count_the_seeds_whose_every_trial_finished():
    # seed 0: source_only W->A failed; seed 2: srdc W->A still running; seed 1: every trial finished
    assert study_tags(RECORDS, 3, "Table 1/6") == {
        "srdc.paper_table": "Table 1/6", "srdc.dataset": "office31", "srdc.setting": "transductive",
        "srdc.seeds_planned": "3", "srdc.seeds_finished": "1"}
    assert study_tags(RECORDS[:3], None, "")["srdc.seeds_planned"] == "3"
    assert study_tags(RECORDS[:3], None, "")["srdc.paper_table"] == "none"


def test_study_results_hold_every_selection_in_every_format():
    results = study_results(RECORDS, "demo", planned=3, paper_table="Table 1/6")
    assert [table.selection for table in results.tables] == ["oracle", "labelfree", "last"]
    assert results.printed == render(results.tables[:2], "md")
    files = results.files()
    assert set(files) == set(RESULT_FILES.values()) == {"tables.md", "tables.csv", "tables.tex", "report.html"}
    assert files["tables.md"] == render(results.tables, "md")
    assert files["tables.tex"] == render(results.tables, "latex")
    rows = list(csv.DictReader(line for line in io.StringIO(files["tables.csv"]) if not line.startswith("#")))
    assert {row["selection"] for row in rows} == {"oracle", "labelfree", "last"} and len(rows) == 3 * 5
    assert "<td>80.0±2.0 (SRDC paper 95.7, -15.7)</td>" in files["report.html"]  # srdc A->W, last epoch
    assert results.metrics["last.srdc.A-W.mean"] == 80.0 and results.tags["srdc.seeds_finished"] == "1"
    own = study_results(RECORDS, "demo", planned=3, markdown={"oracle": "**mine**", "labelfree": "ours",
                                                              "last": "theirs"})
    assert own.printed == "**mine**\nours" and own.files()["tables.md"] == "**mine**\nours\ntheirs"
    assert own.metrics == results.metrics  # the summary metrics come from the mean±std tables all the same


# -- the paper's numbers -------------------------------------------------------------------------------------
def test_paper_values_copied_from_the_paper():
    assert paper_cell(6, "srdc", "A->W") == (95.7, 0.2)
    assert paper_cell(1, "srdc_no_struct", "A->W") == (87.3, 0.0)
    assert paper_value(1, "srdc_no_featdisc", "D->A") == 74.3
    assert paper_value(1, "srdc_no_softsel", "Avg") == 84.9
    assert paper_value(2, "oracle", "Avg") == 93.0
    assert paper_value(2, "MCD", "W->A") == 70.9
    assert paper_value(2, "srdc", "D->W") is None
    assert paper_value(3, "source_only", "W->D") == 99.3
    assert paper_cell(7, "srdc", "P->C") == (97.7, 0.1)
    assert paper_value(7, "CAN", "I->P") == 77.2
    assert paper_cell(8, "srdc", "Ar->Cl") == (52.3, None)
    assert paper_value(8, "CADA-P", "Rw->Pr") == 84.1
    assert paper_value(8, "nobody", "Ar->Cl") is None
    assert [len(TABLES[t].rows) for t in range(1, 9)] == [5, 5, 21, 9, 14, 27, 15, 16]


def test_paper_tables_are_consistent():
    for small, full in ((3, 6), (4, 7), (5, 8)):  # Tables 6-8 repeat Tables 3-5 with more methods
        assert all(TABLES[full].rows[row] == cells for row, cells in TABLES[small].rows.items())
    for table in (TABLES[table_id] for table_id in range(1, 9)):  # the SRDC paper's, with printed averages
        for row, values in table.rows.items():
            mean = sum(values[task][0] for task in table.tasks) / len(table.tasks)
            assert abs(mean - values["Avg"][0]) < 0.15, (table.table_id, row)


def test_the_baselines_published_digits_numbers_stand_beside_our_rows_of_the_same_domains_only():
    """Table 9 is not the SRDC paper's: ADDA's Table 2 and CDAN's Table 4, on USPS <-> MNIST."""
    assert paper_reference("digits", "transductive", "dann", "usps->mnist") == Reference(73.0, "ADDA paper")
    assert paper_reference("digits", "transductive", "dann", "mnist->usps") == Reference(77.1, "ADDA paper")
    assert paper_reference("digits", "transductive", "source_only", "usps->mnist") == Reference(57.1, "ADDA paper")
    assert paper_reference("digits", "transductive", "cdan", "usps->mnist") == Reference(98.0, "CDAN paper")
    assert paper_reference("office31", "transductive", "cdan", "A->W") == Reference(94.1, "SRDC paper")  # Table 6
    for row in ("source_only", "dann", "cdan"):  # mnist_photo is not MNIST-M: DANN's MNIST-M numbers are not shown
        assert paper_reference("digits", "transductive", row, "mnist->mnist_photo") is None
    assert paper_reference("digits", "transductive", "srdc", "usps->mnist") is None
    assert paper_value(9, "dann", "Avg") is None
    assert TABLES[3].rows["dann"]["A->W"] == (81.7, 0.2) and TABLES[3].rows["cdan"]["A->W"] == (94.1, 0.1)


def test_paper_task_names():
    assert paper_task("office31", "amazon->webcam") == "A->W"
    assert paper_task("Office-Home", "Real_World->Art") == "Rw->Ar"
    assert paper_task("imageclef", "c->p") == "C->P"
    assert paper_task("digits", "mnist->usps") == "mnist->usps"


def test_a_table_under_any_validators_label_free_pick():
    records = [record("srdc", AW, seed, 80.0 + seed, acc_labelfree_snd=70.0 + 2 * seed) for seed in (0, 1, 2)]
    table = aggregate(records, "labelfree_snd", planned=3)
    assert cells(table)["srdc", "A->W"][:3] == (72.0, 2.0, 3)  # 70, 72, 74
    assert "labelfree_snd = epoch chosen without target labels by snd" in table.caption
    assert table.title.endswith("label-free selection by snd")


# -- the command line ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory):
    """An embedded SQLite store holding study "cli": srdc on A->W with seeds 0, 1 finished and 2 running."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"
    tracker = MLflowTracker(uri, "tests")
    parent_id = tracker.attach_study("cli", {"seeds": "[0, 1, 2]"})
    for seed, accuracy, status in ((0, 80.0, "FINISHED"), (1, 84.0, "FINISHED"), (2, 10.0, "RUNNING")):
        config = {"dataset": "office31", "source": "A", "target": "W", "variant": "srdc", "seed": seed,
                  "setting": "transductive", "labelfree_selector": "infomax", "epochs": 2}
        run_id, _ = tracker.attach_trial("cli", parent_id, f"c_{seed}", config)
        tracker.log_summary(run_id, {"acc_last": accuracy, "acc_best_oracle": accuracy, "acc_labelfree": accuracy,
                                     "acc_labelfree_snd": accuracy - 10.0, "epochs": 2})
        tracker.set_status(run_id, status)
    return uri


def test_cli_prints_the_table_mid_study(tracking_uri, capsys):
    assert main(["--study", "cli", "--tracking-uri", tracking_uri, "--experiment", "tests"]) == 0
    out = capsys.readouterr().out
    # 80, 84 -> 82.0 ± sqrt(8) = 2.8; seed 2 still running -> n=2 of 3 planned
    assert "| srdc | 82.0±2.8 n=2 (SRDC paper 95.7, -13.7) | 82.0 n=2 |" in out


def test_cli_writes_one_html_page(tracking_uri, capsys):
    assert main(["--study", "cli", "--tracking-uri", tracking_uri, "--experiment", "tests", "--format", "html"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("<!DOCTYPE html>") and "<title>Study cli</title>" in out
    assert "<tr><td>srdc</td><td>82.0±2.8 n=2 (SRDC paper 95.7, -13.7)</td><td>82.0 n=2</td></tr>" in out
    # every selection's table, as the study's own report.html holds them, each caption with the budget
    titles = re.findall(r"<h2>([^<]+)</h2>", out)
    assert titles == [f"Study cli: office31, transductive, {what}" for what in
                      ("oracle selection (target labels)", "label-free selection", "last epoch")]
    assert out.count("<table>") == 3 and out.count("after 2 epochs of training, mean±std over 3 seeds per cell") == 3
    # the study's figures, embedded: its runs hold no per-epoch accuracy, so the ablation charts alone
    assert re.findall(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]+" alt="([^"]+)">', out) == \
        ["ablation_oracle.png", "ablation_labelfree.png"]


def test_cli_help_names_the_selection_default_and_what_the_html_page_holds(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert ("(default: oracle; the HTML page holds the oracle, labelfree and last tables, and an inductive study's "
            "those two)") in text
    assert "also by the best training-half or test-half accuracy (oracle_train_half, oracle_test_half" in text
    assert "labelfree_NAME: infomax, clustering, entropy" in text  # every registered validator named


def test_cli_unknown_study_names_the_known_ones(tracking_uri, capsys):
    assert main(["--study", "nope", "--tracking-uri", tracking_uri, "--experiment", "tests"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no study 'nope'") and "known studies: cli" in err
    assert main(["--study", "cli", "--tracking-uri", tracking_uri, "--experiment", "other"]) == 2
    assert "no study 'cli' in experiment 'other'" in capsys.readouterr().err


def test_cli_unreachable_server_is_one_clear_error(capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert main(["--study", "x", "--tracking-uri", f"http://127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot read MLflow at http://127.0.0.1:{port}") and len(err.splitlines()) == 1
    assert err.rstrip().endswith("start the server (mlflow_server/start.sh) or pass --tracking-uri")


def test_cli_missing_sqlite_store_is_not_created(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert main(["--study", "x", "--tracking-uri", uri]) == 2
    assert capsys.readouterr().err == f"error: no MLflow store at {uri}; run the report where the study ran, " \
        "or pass --tracking-uri\n"
    assert not (tmp_path / "mlflow.db").exists()


def test_cli_sync_backfills_from_tune_files_then_reports(tmp_path, capsys):
    trial = tmp_path / "tune" / "study" / "train_s_00000_0"
    trial.mkdir(parents=True)
    config = {"dataset": "office31", "source": "A", "target": "D", "variant": "srdc", "seed": 0, "epochs": 2}
    (trial / "params.json").write_text(json.dumps(config))
    (trial / "result.json").write_text("".join(
        json.dumps({"epoch": e, "acc_target": a, "acc_best_oracle": 90.0, "trial_id": "s_00000", "timestamp": 1})
        + "\n" for e, a in ((1, 90.0), (2, 85.0))))
    (trial / "summary.json").write_text(json.dumps(
        {"acc_last": 85.0, "acc_best_oracle": 90.0, "acc_labelfree": 85.0, "epochs": 2}))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert main(["--study", "study", "--tracking-uri", uri, "--sync", "--storage-path", str(tmp_path / "tune"),
                 "--format", "csv"]) == 0
    captured = capsys.readouterr()
    assert "synced 1 trial(s)" in captured.err and "1 run(s) created, 2 epoch(s) logged" in captured.err
    assert "study: office31, transductive, oracle selection (target labels)\",srdc,A->D,90.0000,,1,1,95.8000," \
           "-5.8000,oracle" in captured.out
    # the study's results are published on its parent run
    assert "published the results of study study on its parent run" in captured.err
    client = MlflowClient(uri)
    (parent,) = client.search_runs([client.get_experiment_by_name("srdc-studies").experiment_id],
                                   "tags.`srdc.role` = 'parent'")
    assert parent.data.metrics == {"oracle.srdc.A-D.mean": 90.0, "oracle.srdc.Avg.mean": 90.0,
                                   "labelfree.srdc.A-D.mean": 85.0, "labelfree.srdc.Avg.mean": 85.0,
                                   "last.srdc.A-D.mean": 85.0, "last.srdc.Avg.mean": 85.0}
    assert "| srdc | 90.0 (SRDC paper 95.8, -5.8) | 90.0 |" in parent.data.tags["mlflow.note.content"]
    assert (parent.data.tags["srdc.seeds_planned"], parent.data.tags["srdc.seeds_finished"]) == ("1", "1")
    # its files beside the store, whichever folder the report ran from
    assert (tmp_path / "mlruns" / "srdc-studies" / parent.info.run_id / "artifacts" / "results" / "tables.md").is_file()
    # with the study's figures: the ablation charts, and the learning curves of the synced epochs
    figures = ["ablation_oracle.png", "ablation_labelfree.png", "learning_curves.png"]
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "results")} == \
        {f"results/{name}" for name in [*RESULT_FILES.values(), *figures]}
    # the trial's params as a live study logs them: the options its method reads, with their defaults
    (child,) = client.search_runs([client.get_experiment_by_name("srdc-studies").experiment_id],
                                  "tags.`srdc.role` = 'child'")
    params = child.data.params
    assert (params["variant"], params["epochs"], params["lambda_scale"]) == ("srdc", "2", "1.0")
    assert params["centres_lr_mult"] == "0.1"  # SRDC's own option, at its default
    assert "cdan_map" not in params and "cdan_entropy" not in params  # the adversarial options: not SRDC's


def test_cli_sync_needs_a_sweep_folder(tracking_uri, tmp_path, capsys):
    assert main(["--study", "cli", "--tracking-uri", tracking_uri, "--experiment", "tests", "--sync"]) == 2
    assert "--sync needs --storage-path" in capsys.readouterr().err
    assert main(["--study", "cli", "--tracking-uri", tracking_uri, "--experiment", "tests", "--sync",
                 "--storage-path", str(tmp_path)]) == 2
    assert "no Tune trial folders" in capsys.readouterr().err


def test_a_backfills_progress_line_comes_every_ten_seconds_and_at_the_end(monkeypatch, capsys):
    from srdc.report_cli import ProgressLine

    clock = iter([0.0, 3.0, 10.5, 10.5, 12.0, 13.0, 13.0])  # creation, then each call (and each line said)
    monkeypatch.setattr("srdc.report_cli.time.monotonic", lambda: next(clock))
    progress = ProgressLine("sync: trial folders")
    for done in range(1, 5):
        progress(done, 4)
    assert capsys.readouterr().err.splitlines() == ["sync: trial folders: 2/4", "sync: trial folders: 4/4"]


def test_cli_prints_the_table_under_another_validators_pick_and_refuses_an_unknown_one(tracking_uri, capsys):
    argv = ["--study", "cli", "--tracking-uri", tracking_uri, "--experiment", "tests", "--selection"]
    assert main([*argv, "labelfree_snd"]) == 0
    out = capsys.readouterr().out
    assert "| srdc | 72.0±2.8 n=2" in out and "labelfree_snd = epoch chosen without target labels by snd" in out
    with pytest.raises(SystemExit) as exited:
        main([*argv, "labelfree_vibes"])
    assert exited.value.code == 2 and "invalid choice: 'labelfree_vibes'" in capsys.readouterr().err


def test_each_rows_batchnorm_regime_at_evaluation_is_named_in_the_caption():
    records = [record("source_only", AW, 0, 60.0), record("adabn", AW, 0, 64.0), record("srdc", AW, 0, 80.0),
               record("dann", AW, 0, 70.0), record("cdan", AW, 0, 71.0), record("oracle", AW, 0, 90.0)]
    caption = aggregate(records).caption
    assert caption.endswith(
        " BatchNorm at evaluation: the running statistics of training, over source batches (source_only); the running "
        "statistics of training, over source and target batches, forwarded apart (srdc); the running statistics of "
        "training, over labelled target batches (oracle); each domain's own statistics (adabn); the running statistics "
        "of training, over concatenated source and target batches (dann, cdan).")
    per_domain = [{**r, "prep_batchnorm": "domain"} for r in records if r["variant"] in ("source_only", "srdc")]
    assert aggregate(per_domain).caption.endswith(" BatchNorm at evaluation: each domain's own statistics "
                                                  "(source_only, srdc).")
    widths = [{**r, "width": str(i)} for i, r in enumerate(records)]
    assert "BatchNorm" not in aggregate(widths, rows="width").caption  # rows that are not variants
