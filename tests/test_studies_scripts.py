"""Every script in studies/: its declaration against the paper's table, and its ``--smoke-test`` run end to end
(one full smoke grid, the others sliced to one seed), its printed tables checked against the trials' results."""

import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from study_helpers import load_declaration, plan_of

from srdc.factorial import SWITCHES, estimate_effects, factorial_tables
from srdc.harness.declarations import Study, office31_task_config
from srdc.harness.options import build_parser
from srdc.harness.outcome import summary_tables
from srdc.harness.plan import grid_configs
from srdc.paper_results import TABLES, paper_value
from srdc.trialfiles import TRIAL_LOG

REPO = Path(__file__).resolve().parents[1]
# study -> the paper tables it reproduces (its paper_table), first the one whose rows it has
PAPER_STUDIES = {"benchmark_office31": (3, 6), "benchmark_imageclef": (4, 7), "benchmark_officehome": (5, 8),
                 "inductive_office31": (2,), "factorial_office31": (1,)}
PAPER_NUMBER = re.compile(r" paper \d")  # a cell's "(SRDC paper 95.7, +0.3)"
OFFICE31_STUDIES = ("ablation_office31", "benchmark_office31", "inductive_office31", "factorial_office31")
SELECTIONS = {"oracle": ("acc_best_oracle", "Model selection: oracle = epoch chosen with target labels"),
              "labelfree": ("acc_labelfree", "Model selection: labelfree = epoch chosen without target labels "
                                             "by infomax")}
# an inductive study prints two more tables, the released code's other two accuracies
INDUCTIVE_SELECTIONS = {
    "oracle, target training-half accuracy": ("acc_best_target_train", "Model selection: oracle_train_half = the best "
                                              "accuracy of the target training half itself"),
    "oracle on the target test half": ("acc_best_target_test", "Model selection: oracle_test_half = epoch chosen on "
                                       "the target test half itself")}


def fake_records(study: Study) -> list[dict]:
    """A finished record per trial of the real grid, accuracy 50 + seed (cells: 51.0±1.0 over seeds 0-2)."""
    return [{**config, "status": "FINISHED", "acc_best_oracle": 50.0 + config["seed"], "acc_labelfree": 40.0,
             "acc_last": 45.0} for config in grid_configs(plan_of(study, "--data-root", "/data"))]


# -- declarations -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, table_ids", PAPER_STUDIES.items())
def test_each_study_declares_its_paper_tables_tasks_in_the_papers_order(name, table_ids):
    study = load_declaration(name)
    assert study.paper_table == "Table " + "/".join(map(str, table_ids))
    setting = study.config.get("setting", "transductive")
    for table_id in table_ids:
        table = TABLES[table_id]
        assert study.tasks == table.tasks and (study.dataset, setting) == (table.dataset, table.setting)
    assert set(study.variants) - {"adabn"} <= set(TABLES[table_ids[0]].rows) and study.seeds == (0, 1, 2)
    assert ("adabn" in study.variants) == ("source_only" in study.variants and name != "ablation_office31")


def test_office_home_has_the_twelve_tasks_and_the_paper_rows_source_model_and_srdc():
    study = load_declaration("benchmark_officehome")
    assert study.tasks == ("Ar->Cl", "Ar->Pr", "Ar->Rw", "Cl->Ar", "Cl->Pr", "Cl->Rw",
                           "Pr->Ar", "Pr->Cl", "Pr->Rw", "Rw->Ar", "Rw->Cl", "Rw->Pr")
    assert study.variants == ("source_only", "srdc", "adabn") and len(grid_configs(plan_of(study))) == 12 * 3 * 3


@pytest.mark.parametrize("name", ["benchmark_office31", "benchmark_imageclef", "benchmark_officehome",
                                  "inductive_office31"])
def test_the_paper_numbers_stand_beside_ours_in_every_cell(name):
    study = load_declaration(name)
    text = summary_tables(study, plan_of(study, "--data-root", "/data"), fake_records(study))
    table_id = PAPER_STUDIES[name][0]
    assert "| adabn | " + " | ".join("51.0±1.0" for _ in study.tasks) + " | 51.0 |" in text  # no paper row: no number
    for variant in (variant for variant in study.variants if variant != "adabn"):
        cells = [f"51.0±1.0 (SRDC paper {paper_value(table_id, variant, task):.1f}, "
                 f"{51.0 - paper_value(table_id, variant, task):+.1f})" for task in study.tasks]
        average = paper_value(table_id, variant, "Avg")
        assert f"| {variant} | " + " | ".join(cells) + f" | 51.0 (SRDC paper {average:.1f}, {51.0 - average:+.1f}) |" \
            in text


@pytest.mark.parametrize("name", OFFICE31_STUDIES)
def test_office31_studies_share_the_amazon_target_setting(name):
    study = load_declaration(name)
    assert study.task_config == office31_task_config(study.tasks)
    configs = grid_configs(plan_of(study))
    assert {c["task"] for c in configs if c.get("mu_init") == "target"} == {t for t in study.tasks if t[-1] == "A"}
    assert {c["task"] for c in configs if c.get("aux_kmeans_weight") == 0.5} == {"W->A"} & set(study.tasks)


def test_the_inductive_study_prints_the_released_codes_three_accuracies_each_captioned_with_its_halves():
    study = load_declaration("inductive_office31")
    configs = grid_configs(plan_of(study))
    assert len(configs) == 4 * 4 * 3 and {c["setting"] for c in configs} == {"inductive"}
    assert {c["variant"] for c in configs} == {"source_only", "adabn", "srdc", "oracle"}
    records = [{**record, "acc_best_target_train": 70.0, "acc_best_target_test": 60.0 + record["seed"]}
               for record in fake_records(study)]
    text = summary_tables(study, plan_of(study, "--data-root", "/data"), records)
    titles = [line.strip("*") for line in text.splitlines() if line.startswith("**Study ")]
    assert [title.split("inductive, ")[-1] for title in titles] == [
        "oracle selection (target labels)", "label-free selection", "oracle, target training-half accuracy",
        "oracle on the target test half"]
    assert text.count("epochs are chosen on the target training half, accuracies are those of the held-out") == 2
    assert text.count("the epoch is chosen on the target training half and its accuracy is that half's") == 1
    assert text.count("the epoch is chosen on the held-out target test half and its accuracy is that half's") == 1
    assert text.count("the oracle takes the highest test-half accuracy (the released code's rule)") == 1
    assert text.count("Paper Table 2 reports the oracle's (the test half at the model best on the training half") == 4
    assert "| 70.0±0.0 (SRDC paper 79.3, -9.3) |" in text and "| 61.0±1.0 (SRDC paper 79.3, -18.3) |" in text
    assert "(SRDC paper: Tang, Chen and Jia, CVPR 2020, Table 2, epoch chosen with target labels)" in text


def test_the_factorial_crosses_the_three_switches_in_every_task_and_seed():
    study = load_declaration("factorial_office31")
    assert tuple(study.grid) == SWITCHES and study.variants == ("srdc",)
    configs = grid_configs(plan_of(study))
    assert len(configs) == 8 * 4 * 3
    cells = {(c["task"], c["seed"], *(c[s] for s in SWITCHES)) for c in configs}
    assert len(cells) == len(configs)
    text = factorial_tables(fake_records(study), "oracle", 3, "factorial_office31")
    srdc, no_softsel = paper_value(1, "srdc", "A->W"), paper_value(1, "srdc_no_softsel", "A->W")
    assert f"| S+ F+ W+ = srdc | 51.0±1.0 (SRDC paper {srdc:.1f}, {51.0 - srdc:+.1f}) |" in text
    assert f"| S+ F+ W- = srdc_no_softsel | 51.0±1.0 (SRDC paper {no_softsel:.1f}, " in text
    assert "| structural_source_reg | +0.0 ± 0.0 | 12 |" in text


def test_every_study_has_one_data_root_default_srdc_data_root_else_srdc_trains(monkeypatch, tmp_path):
    monkeypatch.delenv("SRDC_DATA_ROOT", raising=False)
    studies = [load_declaration(path.stem) for path in sorted((REPO / "studies").glob("*.py"))
               if path.stem != "search_lambda_lr"] + [load_declaration("search_lambda_lr", "SEARCH").study]
    assert [build_parser(study).parse_args([]).data_root for study in studies] == ["data"] * len(studies)
    assert "where the datasets are (default: $SRDC_DATA_ROOT, else data; now data)" in " ".join(
        build_parser(studies[0]).format_help().split())
    monkeypatch.setenv("SRDC_DATA_ROOT", str(tmp_path))
    assert plan_of(load_declaration("benchmark_digits")).fixed["data_root"] == str(tmp_path)
    assert plan_of(load_declaration("ablation_office31")).fixed["data_root"] == str(tmp_path)
    assert plan_of(load_declaration("benchmark_digits"), "--data-root", "/d").fixed["data_root"] == "/d"


def test_the_digits_study_has_no_paper_table_and_trains_15_epochs():
    study = load_declaration("benchmark_digits")
    assert study.paper_table == "" and "no paper table" in study.description.lower()
    assert study.tasks == ("usps->mnist", "mnist->usps", "mnist->mnist_photo", "usps->mnist_photo")
    assert study.config["epochs"] == 15  # converged on USPS <-> MNIST (docs/results_digits.md)
    assert study.variants == ("source_only", "srdc_no_struct", "srdc_no_featdisc", "srdc_no_softsel", "srdc", "adabn",
                              "dann", "cdan")
    text = summary_tables(study, plan_of(study, "--data-root", "/data"), fake_records(study))
    assert "| variant | usps->mnist | mnist->usps | mnist->mnist_photo | usps->mnist_photo | Avg |" in text
    assert "| srdc | 51.0±1.0 | 51.0±1.0 | 51.0±1.0 | 51.0±1.0 | 51.0 |" in text
    # the baselines' own published digits numbers stand beside ours on the same domains, each named by its paper:
    # ADDA's Table 2 and CDAN's Table 4 for U->M and M->U; none beside mnist_photo, which is not MNIST-M
    assert "| dann | 51.0±1.0 (ADDA paper 73.0, -22.0) | 51.0±1.0 (ADDA paper 77.1, -26.1) | " \
           "51.0±1.0 | 51.0±1.0 | 51.0 |" in text
    assert "| cdan | 51.0±1.0 (CDAN paper 98.0, -47.0) | 51.0±1.0 (CDAN paper 95.6, -44.6) | 51.0±1.0 | 51.0±1.0 | " \
           "51.0 |" in text
    assert ("In parentheses: the number the paper named published (ADDA paper: Tzeng et al., CVPR 2017, Table 2, "
            "LeNet, its own protocol; CDAN paper: Long et al., NeurIPS 2018, Table 4, LeNet, its own protocol) and "
            "ours minus it.") in text
    assert "DANN paper" not in text
    assert "SRDC paper" not in text and ".py" not in text  # no SRDC number, no source file


# -- the scripts, run -------------------------------------------------------------------------------------------
def run_smoke(name: str, tmp_path: Path, *argv: str) -> str:
    """``studies/NAME.py --smoke-test ARGV`` in a fresh process; its stdout (the exit status must be 0; the console
    quiet: no worker echo, colour code or library INFO line on stdout or stderr, each trial's output in its log)."""
    command = [sys.executable, str(REPO / "studies" / f"{name}.py"), "--smoke-test", *argv, "--storage-path",
               str(tmp_path / "ray"), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=1200,
                          env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for noise in ("pid=", "\x1b[", " INFO "):
        assert noise not in done.stdout + done.stderr
    logs = list((tmp_path / "ray").glob(f"*/*/{TRIAL_LOG}"))
    assert logs and all("threads: " in log.read_text() for log in logs)
    return done.stdout


def markdown_tables(text: str) -> list[dict]:
    """Each Markdown table in ``text``: title, header cells, rows (first cell -> the others), caption."""
    lines, tables = [*text.splitlines(), ""], []
    for i, line in enumerate(lines[:-1]):
        if line.startswith("| ") and lines[i + 1].startswith("|---|"):  # not Tune's progress tables ("|----+")
            rows, end = {}, i + 2
            while end < len(lines) and lines[end].startswith("|"):
                cells = [cell.strip() for cell in lines[end].strip("|").split("|")]
                rows[cells[0]] = cells[1:]
                end += 1
            tables.append({"title": lines[i - 2].strip("*"), "header": [c.strip() for c in line.strip("|").split("|")],
                           "rows": rows, "caption": lines[end + 1].strip("*")})
    return tables


def trial_records(storage: Path) -> list[dict]:
    """Each trial's config and final reported metrics, read from its Tune folder."""
    records = []
    for params in sorted(storage.glob("*/params.json")):
        last = json.loads((params.parent / "result.json").read_text().splitlines()[-1])
        records.append({**json.loads(params.read_text()), **last, "status": "FINISHED"})
    return records


def cell_text(values: list[float]) -> str:
    mean = f"{statistics.mean(values):.1f}"
    return mean if len(values) == 1 else f"{mean}±{statistics.stdev(values):.1f}"


def row_of(record: dict, row_label: str) -> str:
    """The row a trial belongs to: its variant, or the code of its switches (``S+ F- W+``) in the factorial's."""
    if row_label == "variant":
        return record["variant"]
    return " ".join(f"{letter}{'+' if record[s] else '-'}" for letter, s in zip("SFW", SWITCHES, strict=True))


def check_tables(out: str, name: str, tmp_path: Path, rows: tuple[str, ...], setting: str = "transductive",
                 row_label: str = "variant") -> list[dict]:
    """The oracle and label-free results tables: the smoke tasks as columns, each named after the study's task it
    stands in for, ``rows``, every cell from all the planned seeds (no ``n=k``) and equal to the trials' results;
    the caption names the selection. Returns the trials' records."""
    records = trial_records(tmp_path / "ray" / f"{name}-smoke")
    study = load_declaration(name)
    stand_ins = study.smoke.stand_ins(study.tasks)
    column = {task: f"{stand_ins[task]} ({task})" for task in {r["task"] for r in records}}
    seeds, tasks = {r["seed"] for r in records}, sorted(column, key=column.get)
    tables = [table for table in markdown_tables(out) if table["header"][0] == row_label]
    titles = ["oracle selection (target labels)", "label-free selection"]
    selections = [*SELECTIONS.values()]
    if setting == "inductive":
        titles, selections = [*titles, *INDUCTIVE_SELECTIONS], [*selections, *INDUCTIVE_SELECTIONS.values()]
    assert [table["title"] for table in tables] == [f"Study {name}-smoke: embedded, {setting}, {title}"
                                                    for title in titles]
    for table, (metric, caption) in zip(tables, selections, strict=True):
        assert table["header"] == [row_label, *(column[task] for task in tasks), "Avg"] and caption in table["caption"]
        assert list(table["rows"]) == list(rows)
        for row, cells in table["rows"].items():
            mine = [r for r in records if row_of(r, row_label) == row.split(" =")[0]]
            for task, text in zip(tasks, cells[:-1], strict=True):
                values = [r[metric] for r in mine if r["task"] == task]
                assert len(values) == len(seeds) and text == cell_text(values) and "n=" not in text
    return records


@pytest.mark.slow
def test_benchmark_digits_smoke_grid_every_variant(tmp_path):
    """Every variant on one old and one new task, two seeds (the full smoke grid is 84 trials)."""
    study = load_declaration("benchmark_digits")
    out = run_smoke("benchmark_digits", tmp_path, "--tasks", "usps->mnist", "mnist->mnist_photo", "--seeds", "0", "1")
    trials = len(study.variants) * 2 * 2
    assert f"study benchmark_digits-smoke: {trials} trials, {trials} finished, 0 failed" in out
    records = check_tables(out, "benchmark_digits", tmp_path, study.variants)
    assert {r["task"] for r in records} == {"digits->digits_inverted", "digits_inverted->digits_photo"}
    assert {record["seed"] for record in records} == {0, 1} and {r["epoch"] for r in records} == {2}
    assert not PAPER_NUMBER.search(out)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["benchmark_office31", "benchmark_imageclef", "benchmark_officehome"])
def test_benchmark_smoke_tests_one_seed(name, tmp_path):
    study = load_declaration(name)
    out = run_smoke(name, tmp_path, "--seeds", "0", "--epochs", "1")
    trials = len(study.tasks) * len(study.variants)
    assert f"study {name}-smoke: {trials} trials, {trials} finished, 0 failed" in out
    records = check_tables(out, name, tmp_path, study.variants)
    assert len({r["task"] for r in records}) == len(study.tasks)


@pytest.mark.slow
def test_inductive_smoke_test_reports_the_test_half_at_the_epoch_chosen_on_the_training_half(tmp_path):
    out = run_smoke("inductive_office31", tmp_path, "--seeds", "0")
    records = check_tables(out, "inductive_office31", tmp_path, ("source_only", "srdc", "oracle", "adabn"),
                           "inductive")
    assert out.count("Paper Table 2 reports the oracle's (the test half at the model best on the training half") == 4
    for params in (tmp_path / "ray" / "inductive_office31-smoke").glob("*/params.json"):
        rows = [json.loads(line) for line in (params.parent / "result.json").read_text().splitlines()]
        best_train = max(row["acc_target"] for row in rows[1:])  # the best epoch(s) on the training half
        tied = [row for row in rows[1:] if row["acc_target"] == best_train]
        assert rows[-1]["acc_best_oracle"] == max(row["acc_target_test"] for row in tied)  # the release's tie rule
        assert rows[-1]["acc_best_target_train"] == best_train
        assert rows[-1]["acc_best_target_test"] == max(row["acc_target_test"] for row in rows[1:])
    assert len(records) == 16
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("srdc-studies")
    children = client.search_runs([experiment.experiment_id], "tags.`srdc.role` = 'child'")
    by_trial = {record["trial_id"]: record for record in records}
    assert len(children) == 16
    for child in children:  # the three accuracies, each the trial's own
        record = by_trial[child.data.tags["trial_id"]]
        for metric in ("acc_best_oracle", "acc_best_target_train", "acc_best_target_test"):
            assert child.data.metrics[metric] == pytest.approx(record[metric])


@pytest.mark.slow
def test_factorial_smoke_test_prints_the_effects_of_its_trials(tmp_path):
    out = run_smoke("factorial_office31", tmp_path, "--tasks", "A->W", "--seeds", "0", "1")
    assert "study factorial_office31-smoke: 16 trials, 16 finished, 0 failed" in out
    cells = ("S+ F+ W+ = srdc", "S+ F+ W- = srdc_no_softsel", "S+ F- W+ = srdc_no_featdisc", "S+ F- W-",
             "S- F+ W+", "S- F+ W- = srdc_no_struct", "S- F- W+", "S- F- W-")
    records = check_tables(out, "factorial_office31", tmp_path, cells, row_label="switches")
    tables = markdown_tables(out)
    effects = [table for table in tables if table["header"] == ["effect", "mean ± s.e.", "n"]]
    assert len(effects) == 2
    for table, (metric, caption) in zip(effects, SELECTIONS.values(), strict=True):
        expected = estimate_effects(records, SWITCHES, metric, ("task", "seed"))
        assert len(expected) == 7 and caption in table["caption"]
        assert table["rows"] == {e.name: [f"{e.mean:+.1f} ± {e.stderr:.1f}", "2"] for e in expected}
    oracle = next(table for table in tables if table["header"][0] == "switches")["rows"]
    # without structural source regularisation soft selection changes nothing
    assert oracle["S- F+ W+"] == oracle["S- F+ W- = srdc_no_struct"] and oracle["S- F- W+"] == oracle["S- F- W-"]
