"""A study's figures (srdc.figures.study): the numbers they are drawn from, worked out by hand on synthetic records;
valid PNGs embedded in the HTML page; on the parent run of a real study and in srdc-report --format html."""

import base64
import io
import math
import os
import re
import statistics
from pathlib import Path

import pytest
from mlflow import MlflowClient
from PIL import Image
from study_helpers import load_declaration

from srdc.base import TrialStatus
from srdc.factorial import SWITCHES
from srdc.figures.study import (
    CURVE_METRIC,
    HISTORY,
    Bar,
    ablation_bars,
    ablation_panel,
    interaction_means,
    mean_curves,
    new_figure,
    search_chart,
    study_figures,
)
from srdc.harness.main import main as study_main
from srdc.report import RESULT_FILES, study_results
from srdc.report_cli import main as report_main
from srdc.tables import aggregate
from srdc.tracking import EpochRow, MLflowTracker, publish_study, write_results

AW, WA = ("A", "W"), ("W", "A")
DATA_URI = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]+)">')


def record(variant: str, task: tuple[str, str], seed: int, oracle: float, status: str = "FINISHED",
           curve: tuple[float, ...] = (), **extra) -> dict:
    """A trial record: config, status, summary accuracies and (``curve``) its target accuracy at epochs 0, 1..."""
    found = {"dataset": "office31", "setting": "transductive", "variant": variant, "task": "->".join(task),
             "seed": seed, "status": status, "acc_best_oracle": oracle, "acc_labelfree": oracle - 2.0,
             "acc_last": oracle - 1.0, "labelfree_selector": "infomax", **extra}
    if curve:
        found[HISTORY] = [{"epoch": epoch, CURVE_METRIC: value} for epoch, value in enumerate(curve)]
    return found


RECORDS = [
    # srdc A->W: 80, 82, 87 -> mean 83.0, sample std sqrt((9 + 1 + 16) / 2) = sqrt(13); the paper: 95.7
    record("srdc", AW, 0, 80.0, curve=(10.0, 50.0, 80.0)), record("srdc", AW, 1, 82.0, curve=(12.0, 60.0, 82.0)),
    record("srdc", AW, 2, 87.0, curve=(14.0, 55.0)),  # its history stops at epoch 1
    # source_only A->W: 60, 64 -> 62.0 ± sqrt(8); the paper: 77.8; the running seed is left out
    record("source_only", AW, 0, 60.0, curve=(10.0, 60.0)), record("source_only", AW, 1, 64.0, curve=(10.0, 64.0)),
    record("source_only", AW, 2, 99.0, status="RUNNING", curve=(90.0, 99.0)),
    # srdc W->A: one seed -> 70.0, no std; the paper: 77.1
    record("srdc", WA, 0, 70.0, curve=(5.0, 70.0)),
]


def png(path: Path) -> tuple[int, int]:
    """The size of the PNG at ``path`` (PIL reads it whole: a truncated file fails)."""
    with Image.open(path) as image:
        image.load()
        assert image.format == "PNG"
        return image.size


# -- the numbers ---------------------------------------------------------------------------------------------------
def test_the_ablation_bars_are_the_tables_means_and_sample_stds_with_the_papers_numbers():
    bars = ablation_bars(aggregate(RECORDS))
    assert [(bar.column, bar.row) for bar in bars] == [("A->W", "source_only"), ("A->W", "srdc"),
                                                       ("W->A", "srdc"), ("Avg", "srdc")]
    by_cell = {(bar.column, bar.row): bar for bar in bars}
    assert by_cell["A->W", "srdc"] == Bar("A->W", "srdc", pytest.approx(83.0), pytest.approx(13 ** 0.5), 95.7,
                                          "SRDC paper")
    assert by_cell["A->W", "source_only"] == Bar("A->W", "source_only", 62.0, pytest.approx(8 ** 0.5), 77.8,
                                                 "SRDC paper")
    assert by_cell["W->A", "srdc"] == Bar("W->A", "srdc", 70.0, None, 77.1, "SRDC paper")
    # Avg: the mean of the task means (83 + 70) / 2, no std; the paper's average needs all of its tasks
    assert by_cell["Avg", "srdc"] == Bar("Avg", "srdc", pytest.approx(76.5), None, None)
    labelfree = {(bar.column, bar.row): bar.mean for bar in ablation_bars(aggregate(RECORDS, "labelfree"))}
    assert labelfree["A->W", "srdc"] == pytest.approx(81.0)


def test_the_chart_draws_those_bars_error_bars_and_paper_lines():
    table = aggregate(RECORDS)
    figure = new_figure(6.0, 3.0)
    axes = figure.subplots()
    ablation_panel(axes, table)
    bars = ablation_bars(table)
    assert sorted(patch.get_height() for patch in axes.patches) == pytest.approx(sorted(bar.mean for bar in bars))
    segments = [segment for collection in axes.collections for segment in collection.get_segments() if len(segment)]
    # the paper's numbers: horizontal lines; the error bars: vertical ones, mean - std to mean + std
    assert sorted(segment[0][1] for segment in segments if segment[0][1] == segment[1][1]) == [77.1, 77.8, 95.7]
    errors = [segment[1][1] - segment[0][1] for segment in segments
              if segment[0][0] == segment[1][0] and not math.isnan(segment[0][1])]
    assert sorted(errors) == pytest.approx(sorted(2 * bar.std for bar in bars if bar.std is not None))
    assert [text.get_text() for text in axes.get_xticklabels()] == ["A->W", "W->A", "Avg"]


def test_the_accuracy_axis_starts_at_0_and_the_legend_names_each_numbers_paper():
    table = aggregate(RECORDS)  # every bar above 60: a zoomed axis would start at 50
    axes = new_figure(6.0, 3.0).subplots()
    ablation_panel(axes, table)
    assert axes.get_ylim()[0] == 0.0
    assert sorted(text.get_text() for text in axes.get_legend().get_texts()) == ["SRDC paper", "source_only", "srdc"]
    # the digits baselines' numbers, each from its own paper, a line style each
    digits = [dict(r, dataset="digits", task=task, variant=variant)
              for r, task, variant in ((RECORDS[0], "usps->mnist", "dann"), (RECORDS[0], "mnist->usps", "dann"),
                                       (RECORDS[0], "usps->mnist", "cdan"), (RECORDS[0], "mnist->mnist_photo", "cdan"))]
    axes = new_figure(6.0, 3.0).subplots()
    ablation_panel(axes, aggregate(digits, "labelfree"))
    assert axes.get_ylim()[0] == 0.0
    labels = [text.get_text() for text in axes.get_legend().get_texts()]
    assert sorted(labels) == ["ADDA paper (oracle selection)", "CDAN paper (oracle selection)", "cdan", "dann"]
    styles = {collection.get_label(): collection.get_linestyle()[0] for collection in axes.collections
              if collection.get_label() in labels}
    assert len(set(map(str, styles.values()))) == 2


def test_learning_curves_are_the_mean_and_sample_std_over_the_seeds_that_reached_each_epoch():
    curves = {(curve.panel, curve.label): curve for curve in mean_curves(RECORDS, lambda r: r["variant"])}
    assert list(curves) == [("A->W", "source_only"), ("A->W", "srdc"), ("W->A", "srdc")]
    srdc = curves["A->W", "srdc"]
    assert srdc.epochs == [0, 1, 2]
    assert srdc.mean == pytest.approx([12.0, 55.0, 81.0])
    assert srdc.std == pytest.approx([2.0, 5.0, statistics.stdev([80.0, 82.0])])  # epoch 2: two seeds
    # the running source_only seed is no part of its curve
    assert curves["A->W", "source_only"].mean == pytest.approx([10.0, 62.0])
    assert curves["W->A", "srdc"].std == [0.0, 0.0]


def factorial_records() -> list[dict]:
    """The 8 cells of the switches on one task, one seed, as MLflow's params hold them (text); the accuracy is
    60 + 10 S + 4 F + 2 S F (and 1 more where W is on), so S x F interacts, W adds 1 everywhere."""
    found = []
    for index in range(8):
        levels = [bool(index & 4), bool(index & 2), bool(index & 1)]
        s, f, w = levels
        accuracy = 60.0 + 10 * s + 4 * f + 2 * (s and f) + w
        found.append(record("srdc", AW, 0, accuracy, curve=(10.0, accuracy),
                            **{name: str(level) for name, level in zip(SWITCHES, levels, strict=True)}))
    return found


def test_the_interaction_means_average_over_the_other_switch_and_seeds():
    records = factorial_records()
    s_by_f = interaction_means(records, "acc_best_oracle", "structural_source_reg", "feature_discrimination")
    # F off: S off 60.5, S on 70.5; F on: S off 64.5, S on 76.5 (W on in half the cells: +0.5)
    assert s_by_f == {(False, False): 60.5, (False, True): 70.5, (True, False): 64.5, (True, True): 76.5}
    w_by_s = interaction_means(records, "acc_labelfree", "soft_source_selection", "structural_source_reg")
    assert w_by_s[True, True] - w_by_s[True, False] == w_by_s[False, True] - w_by_s[False, False] == 1.0


# -- the figures ---------------------------------------------------------------------------------------------------
def test_the_figures_are_pngs_and_the_html_page_embeds_each_once(tmp_path):
    results = study_results(RECORDS, "demo", planned=3)
    figures = study_figures(results, tmp_path / "results")
    assert [path.name for path in figures] == ["ablation_oracle.png", "ablation_labelfree.png",
                                               "learning_curves.png"]
    for path in figures:
        width, height = png(path)
        assert 300 < width < 2000 and 200 < height < 2000 and path.stat().st_size < 200_000
    write_results(results, tmp_path / "results", figures)
    page = (tmp_path / "results" / RESULT_FILES["html"]).read_text()
    embedded = DATA_URI.findall(page)
    assert [alt for _, alt in embedded] == [path.name for path in figures]
    assert all(base64.b64decode(data) == path.read_bytes() for (data, _), path in zip(embedded, figures, strict=True))
    assert page.count("<img") == len(figures)


def test_records_without_histories_get_the_ablation_charts_alone(tmp_path):
    records = [{key: value for key, value in r.items() if key != HISTORY} for r in RECORDS]
    figures = study_figures(study_results(records, "demo"), tmp_path)
    assert [path.name for path in figures] == ["ablation_oracle.png", "ablation_labelfree.png"]
    assert study_figures(study_results([record("srdc", AW, 0, 1.0, status="RUNNING")], "demo"), tmp_path) == []


def test_the_factorial_study_gets_its_cells_as_bars_and_the_interaction_plot(tmp_path):
    results = study_results(factorial_records(), "fact", split=SWITCHES)
    figures = study_figures(results, tmp_path)
    assert [path.name for path in figures] == ["ablation_oracle.png", "ablation_labelfree.png",
                                               "learning_curves.png", "interaction.png"]
    assert all(png(path) for path in figures)


def test_the_search_chart_is_a_png_with_a_panel_per_parameter(tmp_path):
    records = [{"lr": lr, "lambda_scale": scale, "status": status, "acc_best_oracle": 50.0 + 100 * lr,
                "acc_labelfree": 40.0 + scale}
               for lr, scale, status in ((0.001, 0.2, "FINISHED"), (0.01, 1.0, "STOPPED"), (0.05, 5.0, "FINISHED"),
                                         (0.02, 2.0, "FAILED"))]
    path = search_chart(records, {"lr": True, "lambda_scale": False}, "search s", tmp_path / "search.png")
    width, height = png(path)
    assert width > height > 200


# -- a tracking store ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def store_uri(tmp_path_factory) -> str:
    """One embedded SQLite store for this module's tests, a study each; its experiments are made in its folder, so
    that their artifacts go to its ``mlruns/`` (an embedded store's artifact root is relative to the working folder)."""
    folder = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        for experiment in ("figures", "srdc-studies"):
            MlflowClient(uri).create_experiment(experiment)
    finally:
        os.chdir(cwd)
    return uri


def store_with_curves(uri: str) -> None:
    """Study "curves" on office31 A->W: srdc and source_only, seeds 0 and 1, each with its per-epoch accuracy."""
    tracker = MLflowTracker(uri, "figures")
    parent_id = tracker.attach_study("curves", {"seeds": "[0, 1]"})
    for variant, base in (("srdc", 80.0), ("source_only", 60.0)):
        for seed in (0, 1):
            config = {"dataset": "office31", "source": "A", "target": "W", "variant": variant, "seed": seed,
                      "setting": "transductive", "labelfree_selector": "infomax", "epochs": 2}
            run_id, _ = tracker.attach_trial("curves", parent_id, f"{variant}_{seed}", config)
            tracker.log_rows(run_id, [EpochRow(epoch, 0, {"epoch": epoch, CURVE_METRIC: base * epoch / 2 + seed})
                                      for epoch in range(3)])
            tracker.log_summary(run_id, {"acc_best_oracle": base + seed, "acc_labelfree": base, "acc_last": base,
                                         "epochs": 2})
            tracker.set_status(run_id, TrialStatus.FINISHED)


def test_sync_publishes_the_figures_and_the_html_report_embeds_them(store_uri, capsys):
    uri = store_uri
    store_with_curves(uri)
    tracker = MLflowTracker(uri, "figures")
    assert publish_study(tracker, "curves")
    parent = tracker.find_study("curves")
    held = {info.path for info in MlflowClient(uri).list_artifacts(parent.run_id, "results")}
    figures = {"ablation_oracle.png", "ablation_labelfree.png", "learning_curves.png"}
    assert held == {f"results/{name}" for name in [*RESULT_FILES.values(), *figures]}

    assert report_main(["--study", "curves", "--tracking-uri", uri, "--experiment", "figures", "--format",
                        "html"]) == 0
    page = capsys.readouterr().out
    embedded = DATA_URI.findall(page)
    assert sorted(alt for _, alt in embedded) == sorted(figures) and page.count("<img") == 3
    for data, _ in embedded:
        with Image.open(io.BytesIO(base64.b64decode(data))) as image:
            assert image.format == "PNG"
    assert "<td>80.5±0.7 (SRDC paper 95.7, -15.2)</td>" in page  # the table is still the selected one


def test_the_html_report_of_the_factorial_study_has_a_table_per_cell_and_the_interaction_plot(store_uri, capsys):
    uri = store_uri
    tracker = MLflowTracker(uri, "figures")
    parent_id = tracker.attach_study("fact", {"seeds": "[0]", **{f"grid.{name}": "[true, false]" for name in SWITCHES}})
    for index, trial in enumerate(factorial_records()):
        config = {key: trial[key] == "True" if key in SWITCHES else trial[key]
                  for key in ("dataset", "setting", "variant", "seed", "labelfree_selector", *SWITCHES)}
        run_id, _ = tracker.attach_trial("fact", parent_id, f"f_{index}", {**config, "source": "A", "target": "W"})
        tracker.log_rows(run_id, [EpochRow(epoch, 0, {"epoch": epoch, CURVE_METRIC: row[CURVE_METRIC]})
                                  for epoch, row in enumerate(trial[HISTORY])])
        tracker.log_summary(run_id, {key: trial[key] for key in ("acc_best_oracle", "acc_labelfree", "acc_last")})
        tracker.set_status(run_id, TrialStatus.FINISHED)
    assert report_main(["--study", "fact", "--tracking-uri", uri, "--experiment", "figures", "--format", "html"]) == 0
    page = capsys.readouterr().out
    assert [alt for _, alt in DATA_URI.findall(page)] == ["ablation_oracle.png", "ablation_labelfree.png",
                                                         "learning_curves.png", "interaction.png"]
    # a table per cell of the switches (the seed repeats across cells): S+ F+ W+ is 60 + 10 + 4 + 2 + 1
    # (every selection's: the page is the study's report.html)
    assert page.count("<h2>") == 8 * 3 and "<td>77.0 (SRDC paper 95.7, -18.7)</td>" in page


@pytest.mark.slow
def test_a_real_studys_parent_run_and_folder_hold_its_figures(tmp_path, monkeypatch, ray_cluster, capsys):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    argv = ["--smoke-test", "--tasks", "A->W", "--variants", "source_only", "srdc", "--seeds", "0", "1",
            "--storage-path", str(tmp_path / "ray"), "--tracking-uri", uri]
    assert study_main(load_declaration("ablation_office31"), argv) == 0, capsys.readouterr().out
    figures = ["ablation_oracle.png", "ablation_labelfree.png", "learning_curves.png", "validator_gaps.png"]
    folder = tmp_path / "ray" / "ablation_office31-smoke" / "results"
    assert all(png(folder / name) for name in figures)
    assert [alt for _, alt in DATA_URI.findall((folder / RESULT_FILES["html"]).read_text())] == figures
    parent = MLflowTracker(uri, "srdc-studies").find_study("ablation_office31-smoke")
    held = {info.path for info in MlflowClient(uri).list_artifacts(parent.run_id, "results")}
    assert {f"results/{name}" for name in figures} <= held


# -- a search's files ------------------------------------------------------------------------------------------------
def test_log_scales_follow_the_searched_domains():
    from ray import tune

    from srdc.harness.search_files import log_scales

    grid = {"lr": tune.loguniform(1e-3, 1e-1), "lambda_scale": tune.uniform(0.1, 10.0),
            "momentum": tune.qloguniform(0.5, 0.99, 0.01)}
    assert log_scales(grid) == {"lr": True, "lambda_scale": False, "momentum": True}


def test_a_searchs_files_and_plots_are_in_its_folder_on_its_parent_run_and_named_in_its_report(tmp_path, store_uri):
    import optuna

    from srdc.harness.options import resolve_launch
    from srdc.harness.search_files import log_to_parent, write_search_files
    from srdc.harness.search_report import Phase, SearchOutcome, describe
    from srdc.harness.search_setup import resolve

    search = load_declaration("search_lambda_lr", "SEARCH")
    uri = store_uri
    setup = resolve(search, resolve_launch(search.study, ["--smoke-test", "--storage-path", str(tmp_path / "ray"),
                                                          "--tracking-uri", uri], search))
    Path(setup.launch.path).mkdir(parents=True)
    study = optuna.create_study(study_name=setup.name, storage=setup.optuna_url, direction="maximize")
    distributions = {"lr": optuna.distributions.FloatDistribution(1e-3, 1e-1, log=True),
                     "lambda_scale": optuna.distributions.FloatDistribution(0.1, 10.0, log=True),
                     "lambda_gamma": optuna.distributions.FloatDistribution(1.0, 20.0)}
    records = []
    for index, (lr, scale) in enumerate(((0.002, 0.3), (0.01, 1.0), (0.05, 4.0), (0.08, 8.0))):
        params = {"lr": lr, "lambda_scale": scale, "lambda_gamma": 2.0 + 4 * index}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=50.0 + index))
        records.append({**params, "params": params, "trial_id": f"t{index}", "epoch": 3,
                        "status": "STOPPED" if index == 1 else "FINISHED", "objective": 50.0 + index,
                        "objective_oracle": 60.0 + index, "acc_best_oracle": 60.0 + index,
                        "acc_labelfree": 55.0 + index})
    outcome = SearchOutcome(setup, Phase(setup.name, records, False, 1.0),
                            parent_run_id=MLflowTracker(uri, "srdc-studies").attach_study(setup.name, {}))
    files = write_search_files(outcome)
    folder = Path(setup.launch.path) / "results"
    assert {path.name for path in files} == {"optuna_trials.csv", "optuna_importances.json", "optuna_history.png",
                                             "optuna_importances.png", "search_accuracy.png", "search_report.md"}
    assert all(path.parent == folder and path.is_file() for path in files)
    assert all(png(path) for path in files if path.suffix == ".png")
    assert f"{folder}/" in describe(outcome) and f"{folder}/" in (folder / "search_report.md").read_text()
    log_to_parent(outcome, files)
    held = {info.path for info in MlflowClient(uri).list_artifacts(outcome.parent_run_id, "search")}
    assert held == {f"search/{path.name}" for path in files}
