"""``srdc-report --validators``: the label-free validators judged against the oracle over a study's runs."""

import pytest

from srdc.base import TrialStatus
from srdc.report_cli import main
from srdc.tracking import EpochRow, open_tracker
from srdc.validator_report import ranks, render_gaps, scores_by, spearman, validator_scores
from srdc.validators import VALIDATORS


def test_ranks_average_ties_and_spearman_matches_hand_values():
    assert ranks([10.0, 30.0, 20.0, 20.0]) == [1.0, 4.0, 2.5, 2.5]
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks x 1 2 3 4 against y 1 3 2 4: 1 - 6 * (0 + 1 + 1 + 0) / (4 * 15) = 0.8
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert spearman([1, 2], [1, 2]) is None and spearman([1, 1, 1], [1, 2, 3]) is None


def run(task: str, accuracies: list[float], infomax: list[float], clustering: list[float]) -> dict:
    """A finished run whose epochs 1..E have these values (epoch 0: the untrained model, never a candidate)."""
    history = [{"epoch": 0, "acc_target": 5.0, "infomax": 99.0, "clustering_objective": -99.0}]
    history += [{"epoch": epoch, "acc_target": acc, "infomax": info, "clustering_objective": clus}
                for epoch, (acc, info, clus) in enumerate(zip(accuracies, infomax, clustering, strict=True), 1)]
    by_infomax = max(range(len(infomax)), key=lambda i: (infomax[i], -i))
    by_clustering = min(range(len(clustering)), key=lambda i: (clustering[i], i))
    return {"task": task, "status": TrialStatus.FINISHED, "history": history, "acc_best_oracle": max(accuracies),
            "acc_labelfree_infomax": accuracies[by_infomax], "acc_labelfree_clustering": accuracies[by_clustering]}


RUNS = [
    # infomax follows the accuracy exactly; the clustering objective is lowest at the worst epoch
    run("A->W", [50, 60, 70], [0.1, 0.2, 0.3], [3.0, 2.0, 1.0]),
    run("A->W", [40, 80, 60], [0.2, 0.9, 0.5], [1.0, 2.0, 3.0]),
    run("D->A", [30, 20, 10], [0.3, 0.2, 0.1], [1.0, 2.0, 3.0]),
    run("D->A", [35, 45, 55], [0.0, 0.1, 0.4], [3.0, 1.0, 2.0]),
]


def test_scores_of_each_validator_against_hand_computed_picks():
    scores = {score.name: score for score in validator_scores(RUNS + [{**RUNS[0], "status": "RUNNING"}])}
    infomax, clustering = scores["infomax"], scores["clustering"]
    assert infomax.runs == clustering.runs == 4  # the unfinished run is left out
    # infomax picks the oracle's epoch in every run: accuracies 70, 80, 30, 55
    assert infomax.epoch_accuracy == pytest.approx((70 + 80 + 30 + 55) / 4) and infomax.epoch_gap == 0.0
    assert infomax.epoch_rho == pytest.approx(1.0)
    # the clustering objective (lower is better) picks 70, 40, 30, 45: gaps 0, 40, 0, 10
    assert clustering.epoch_accuracy == pytest.approx((70 + 40 + 30 + 45) / 4)
    assert clustering.epoch_gap == pytest.approx(12.5)
    assert clustering.epoch_gap_se == pytest.approx((1075 / 3) ** 0.5 / 2)  # sample std of 0, 40, 0, 10 / sqrt(4)
    # per run, rho of -objective with accuracy: 1, rho([-1,-2,-3], [40,80,60]) = -0.5, 1, rho([-3,-1,-2], ...) = 0.5
    assert clustering.epoch_rho == pytest.approx((1 - 0.5 + 1 + 0.5) / 4)
    # configurations: A->W infomax bests 0.3 vs 0.9 -> the second run (80, the best oracle run: gap 0);
    # D->A 0.3 vs 0.4 -> the second run (55; oracle best 55: gap 0)
    assert infomax.config_accuracy == pytest.approx((80 + 55) / 2) and infomax.config_gap == 0.0
    assert infomax.config_rho is None  # two runs per task: too few to rank
    # clustering bests (-min): A->W -1.0 vs -1.0 -> the first of the tie (70; gap 80 - 70 = 10);
    # D->A -1.0 vs -1.0 -> the first (30; gap 55 - 30 = 25)
    assert clustering.config_accuracy == pytest.approx(50.0) and clustering.config_gap == pytest.approx(17.5)


def test_the_configuration_rank_correlation_over_three_runs_of_a_task():
    third = run("A->W", [20, 25, 30], [0.05, 0.06, 0.07], [0.5, 0.6, 0.7])
    scores = {score.name: score for score in validator_scores([*RUNS[:2], third])}
    # infomax bests 0.3, 0.9, 0.07 against picks 70, 80, 30: the same order, rho 1
    assert scores["infomax"].config_rho == pytest.approx(1.0)
    # clustering bests -1.0, -1.0, -0.5 (ranks 1.5, 1.5, 3) against picks 70, 40, 20 (ranks 3, 2, 1)
    assert scores["clustering"].config_rho == pytest.approx(-0.8660254, abs=1e-6)


def test_srdc_report_validators_reads_the_runs_from_mlflow(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = open_tracker(uri, "validators")
    parent = tracker.attach_study("s", {"seeds": 1})
    for index, record in enumerate(RUNS):
        source, target = record["task"].split("->")
        run_id, _ = tracker.attach_trial("s", parent, f"t{index}", {"variant": "srdc", "source": source,
                                                                   "target": target, "seed": index})
        tracker.log_rows(run_id, [EpochRow(row["epoch"], 1000 + row["epoch"], {k: float(v) for k, v in row.items()})
                                  for row in record["history"]])
        tracker.log_summary(run_id, {**{k: v for k, v in record.items() if k.startswith("acc_")}, "epochs": 3})
        tracker.set_status(run_id, TrialStatus.FINISHED)
    assert main(["--study", "s", "--tracking-uri", uri, "--experiment", "validators", "--validators"]) == 0
    out = capsys.readouterr().out
    lines = out.split("**by variant")[0].splitlines()  # the overall table
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in lines if line.startswith("| ")}
    assert rows["infomax"][1:7] == ["max", "4", "58.8", "0.0", "0.0", "1.00"]  # 58.75 rounds to 58.8
    # gaps 0, 40, 0, 10: sample std sqrt(1075 / 3) = 18.93, over sqrt(4) runs: se 9.46
    assert rows["clustering"][1:7] == ["min", "4", "46.2", "12.5", "9.5", "0.50"]
    assert "| infomax | 0.0 | 0.0 (1.00) |" in out.split("**by variant")[1]  # one method: srdc


def test_the_gaps_per_task_rank_the_validators_by_their_mean_gap():
    table = render_gaps(scores_by(RUNS, "task"), "task").splitlines()
    assert table[2] == "| validator | mean gap | A->W | D->A |"
    rows = [line for line in table if line.startswith("| ") and not line.startswith("| validator")]
    # infomax: gaps 0 and 0; clustering: A->W (0 + 40) / 2 = 20, rho (1 - 0.5) / 2; D->A (0 + 10) / 2 = 5,
    # rho (1 + 0.5) / 2; mean gap 12.5; the validators these runs do not hold come last, without numbers
    assert rows[0] == "| infomax | 0.0 | 0.0 (1.00) | 0.0 (1.00) |"
    assert rows[1] == "| clustering | 12.5 | 20.0 (0.25) | 5.0 (0.75) |"
    assert all(" | — | " in row for row in rows[2:]) and len(rows) == len(VALIDATORS)


def study_record(index: int, variant: str) -> dict:
    """RUNS[index] as a finished trial of a study's grid (variant and seed), as the study's records hold it."""
    source, target = RUNS[index]["task"].split("->")
    return {**RUNS[index], "dataset": "office31", "setting": "transductive", "variant": variant, "seed": index,
            "source": source, "target": target, "acc_labelfree": RUNS[index]["acc_labelfree_infomax"],
            "acc_last": RUNS[index]["history"][-1]["acc_target"], "labelfree_selector": "infomax"}


def test_a_studys_results_hold_the_validator_report_and_draw_its_gaps(tmp_path):
    from srdc.figures.study import VALIDATORS_FILE, study_figures
    from srdc.report import RESULT_FILES, study_results

    records = [study_record(0, "srdc"), study_record(2, "srdc"), study_record(1, "dann"), study_record(3, "dann")]
    results = study_results(records, "demo")
    markdown = results.files()[RESULT_FILES["md"]]
    assert markdown.index("**Study demo: label-free validators against the oracle**") > markdown.index("| variant |")
    gaps = markdown.split("**by variant")[1].split("**by task")[0]
    # clustering: srdc gaps 0 (run 0) and 0 (run 2), dann 40 (run 1) and 10 (run 3): mean over methods 12.5
    assert "| validator | mean gap | dann | srdc |" in gaps
    assert "| clustering | 12.5 | 25.0 (0.00) | 0.0 (1.00) |" in gaps and "| infomax | 0.0 |" in gaps
    paths = study_figures(results, tmp_path)
    assert tmp_path / VALIDATORS_FILE in paths
    assert (tmp_path / VALIDATORS_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "validator_gaps.png" in results.files(paths)[RESULT_FILES["html"]]
    without = study_results([{**record, "history": []} for record in records], "demo")
    assert without.validators == "" and "validators against" not in without.files()[RESULT_FILES["md"]]
    assert tmp_path / VALIDATORS_FILE not in study_figures(without, tmp_path / "none")


def test_srdc_report_validators_judges_several_studies_together_and_per_study(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = open_tracker(uri, "validators")
    for study, indices in (("first", (0, 2)), ("second", (1, 3))):
        parent = tracker.attach_study(study, {"seeds": 1})
        for index in indices:
            record = RUNS[index]
            source, target = record["task"].split("->")
            run_id, _ = tracker.attach_trial(study, parent, f"{study}{index}", {"variant": "srdc", "source": source,
                                                                                 "target": target, "seed": index})
            tracker.log_rows(run_id, [EpochRow(row["epoch"], 1000, {k: float(v) for k, v in row.items()})
                                      for row in record["history"]])
            tracker.log_summary(run_id, {**{k: v for k, v in record.items() if k.startswith("acc_")}, "epochs": 3})
            tracker.set_status(run_id, TrialStatus.FINISHED)
    argv = ["--study", "first", "second", "--tracking-uri", uri, "--experiment", "validators"]
    assert main([*argv, "--validators"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("**first, second: label-free validators against the oracle**")
    overall = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in out.split("**by variant")[0].splitlines()
               if line.startswith("| ")}
    assert overall["clustering"][2:5] == ["4", "46.2", "12.5"]  # all four runs, as one study of them
    by_study = out.split("**by study")[1]
    assert "| validator | mean gap | first | second |" in by_study
    assert "| clustering | 12.5 | 0.0 (1.00) | 25.0 (0.00) |" in by_study
    assert main(argv) == 2 and "several --study names are for --validators" in capsys.readouterr().err
