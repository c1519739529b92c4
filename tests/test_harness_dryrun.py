"""``--dry-run``: the trials, resources per trial, trials at once and the estimate from the per-epoch cost table,
checked against the studies' declarations and arithmetic done here; nothing is run or written."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import free_port
from study_helpers import load_declaration

from srdc.config import SRDCConfig
from srdc.data import load_one_domain
from srdc.harness.costs import COSTS_FILE
from srdc.harness.declarations import Study
from srdc.harness.dryrun import device_time, dry_run, duration
from srdc.harness.estimate import DataFacts, schedule, segments_text
from srdc.harness.main import main
from srdc.harness.options import resolve_launch
from srdc.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
ABLATION = load_declaration("ablation_office31")
SEARCH = load_declaration("search_lambda_lr", "SEARCH")
OFFICE31 = {"A": 2817, "D": 498, "W": 795}  # the published image counts of Office-31's domains
TOTAL = re.compile(r"total: (\d+) trials, ([\d.]+) (GPU|CPU)-hours, wall time ([\d.]+) h with (\d+) at once")


def table_row(path: Path, **key) -> dict:
    """The row of the cost table at ``path`` with ``key`` (``device="gpu"``: any GPU's), read as plain JSON."""
    rows = json.loads(path.read_text())["rows"]
    gpu = key.pop("device") == "gpu"
    return next(row for row in rows if all(row[name] == value for name, value in key.items())
                and (row["device"] != "cpu") == gpu)


def batches(images: int, batch: int = 64) -> int:
    return max(1, images // batch)


def office31_run_seconds(task: str, variant: str, epochs: int, row: dict) -> float:
    """One run's seconds, computed here: iterations over the larger drawn domain, one batch per source-only
    iteration and per ``srdc_no_struct`` pre-training epoch (a tenth of the epochs), two otherwise; one
    preparation pass over both domains before training and after each epoch."""
    source, target = (OFFICE31[side] for side in task.split("->"))
    one, two = row["iteration_s_one_batch"], row["iteration_s_two_batches"]
    adapt = max(batches(source), batches(target)) * two
    pretrain = max(1, epochs // 10) if variant == "srdc_no_struct" else 0
    train = epochs * batches(source) * one if variant == "source_only" else \
        pretrain * batches(source) * one + (epochs - pretrain) * adapt
    return train + (epochs + 1) * (source + target) * row["prepare_s_per_image"]


def run_main(declaration, argv, capsys) -> tuple[int, str, str]:
    code = main(declaration, argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_table1_on_8_gpus_at_half_a_gpu_each_plans_16_at_once_and_the_tables_estimate(tmp_path, monkeypatch,
                                                                                       capsys, without_ray):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    code, out, _ = run_main(ABLATION, ["--dry-run", "--plan-gpus", "8", "--gpus-per-trial", "0.5",
                                       "--storage-path", "ray"], capsys)
    assert code == 0, out
    trials = len(ABLATION.tasks) * len(ABLATION.variants) * len(ABLATION.seeds)
    assert f"{trials} trials = {len(ABLATION.tasks)} tasks x {len(ABLATION.variants)} variants x " \
           f"{len(ABLATION.seeds)} seeds" in out
    assert "resources per trial: 1 CPU, 0.5 GPU" in out
    assert "at once: 16 (8 GPUs / 0.5 per trial)" in out

    row = table_row(COSTS_FILE, backbone="resnet50", image_size=224, batch_size=64, dtype="fp32", device="gpu")
    epochs = ABLATION.config.get("epochs", SRDCConfig.epochs)
    # half a GPU each: two trials share a GPU's time, each takes twice as long
    seconds = [office31_run_seconds(task, variant, epochs, row) / 0.5
               for task in ABLATION.tasks for variant in ABLATION.variants for _ in ABLATION.seeds]
    count, gpu_hours, unit, wall_h, at_once = TOTAL.search(out).groups()
    assert (int(count), unit, int(at_once)) == (trials, "GPU", 16)
    assert float(gpu_hours) == pytest.approx(sum(seconds) * 0.5 / 3600, abs=0.051)
    # trials started in order whenever a slot frees end between these bounds
    low, high = max(sum(seconds) / 16, max(seconds)), sum(seconds) / 16 + max(seconds)
    assert low / 3600 - 0.051 <= float(wall_h) <= high / 3600 + 0.051
    srdc = office31_run_seconds("A->W", "srdc", epochs, row) / 0.5
    assert f"| A->W | srdc | 3 | {batches(OFFICE31['A'])}x2 | {srdc / epochs:.1f} | {srdc / 3600:.2f} |" in out
    pretrain = epochs // 10
    assert f"| D->A | srdc_no_struct | 3 | {batches(OFFICE31['D'])}x1 ({pretrain} ep), {batches(OFFICE31['A'])}x2 " \
           f"({epochs - pretrain} ep) |" in out

    assert list(tmp_path.iterdir()) == []  # no storage folder, no launch file, no mlflow.db
    import ray

    assert not ray.is_initialized()


def test_a_run_under_an_hour_is_planned_in_minutes_not_0_0_h(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_main(ABLATION, ["--dry-run", "--plan-gpus", "8", "--tasks", "A->W", "--seeds", "0",
                                       "--epochs", "20", "--storage-path", "ray"], capsys)
    assert code == 0, out
    row = table_row(COSTS_FILE, backbone="resnet50", image_size=224, batch_size=64, dtype="fp32", device="gpu")
    seconds = [office31_run_seconds("A->W", variant, 20, row) for variant in ABLATION.variants]
    # 5 trials on 8 GPUs: all at once, the wall time the longest trial's, the GPU time their sum
    assert f"total: 5 trials, {sum(seconds) / 60:.0f} GPU-minutes, wall time {max(seconds) / 60:.0f} min with 5 " \
           f"at once" in out
    assert " h with" not in out and "GPU-hours" not in out


@pytest.mark.parametrize(("seconds", "wall", "device"), [
    (7920.0, "2.2 h", "2.2 GPU-hours"), (2880.0, "48 min", "48 GPU-minutes"), (40.0, "40 s", "40 GPU-seconds")])
def test_times_are_printed_in_hours_minutes_or_seconds(seconds, wall, device):
    assert (duration(seconds), device_time(seconds / 3600, "GPU")) == (wall, device)


def test_a_config_the_table_lacks_gets_no_estimate_but_the_command_that_measures_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_main(ABLATION, ["--dry-run", "--plan-gpus", "8", "--set", "bf16=true", "--set",
                                       "channels_last=false", "--set", "batch_size=48"], capsys)
    assert code == 0
    assert ("no estimate: srdc/harness/epoch_costs.json has no row for resnet50, 224 px, batch 48, bf16, on gpu; "
            "measure it on such a GPU: python benchmarks/epoch_breakdown.py --dataset synthetic --backbone resnet50 "
            "--image_size 224 --batch_size 48 --device cuda --bf16 true --write_costs") in out
    assert "total: 60 trials, no estimate" in out and list(tmp_path.iterdir()) == []


def test_a_search_plans_its_lockstep_trials_at_its_concurrency_then_the_winners_rerun(tmp_path, monkeypatch,
                                                                                     capsys):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_main(SEARCH, ["--dry-run", "--plan-gpus", "8"], capsys)
    assert code == 0, out
    study = SEARCH.study
    runs = len(study.tasks) * len(study.seeds)
    assert f"{SEARCH.num_samples} trials, each {len(study.tasks)} task(s) x {len(study.seeds)} seed(s) in lockstep " \
           f"on office31" in out
    assert f"at once: {SEARCH.max_concurrent} (--max-concurrent {SEARCH.max_concurrent})" in out
    reruns = len(study.tasks) * len(SEARCH.rerun_seeds)
    assert f"{reruns} trials = {len(study.tasks)} tasks x 1 variant x {len(SEARCH.rerun_seeds)} seeds" in out
    row = table_row(COSTS_FILE, backbone="resnet50", image_size=224, batch_size=64, dtype="fp32", device="gpu")
    trial = sum(office31_run_seconds(task, "srdc", SRDCConfig.epochs, row) for task in study.tasks) * len(study.seeds)
    assert runs == 4 and f"| {' + '.join(study.tasks)} | srdc | {SEARCH.num_samples} | 44x2 | " \
                          f"{trial / SRDCConfig.epochs:.1f} | {trial / 3600:.2f} |" in out
    assert "all 2 sweeps, one after another:" in out and list(tmp_path.iterdir()) == []


def test_the_gpu_default_bf16_channels_last_is_planned_with_the_fp32_row_as_an_upper_bound(tmp_path, monkeypatch,
                                                                                          capsys):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_main(ABLATION, ["--dry-run", "--plan-gpus", "8"], capsys)
    assert code == 0, out
    assert "no bf16+channels_last row: planned with the fp32 figures, an upper bound" in out
    fp32 = run_main(ABLATION, ["--dry-run", "--plan-gpus", "8", "--set", "bf16=false", "--set",
                               "channels_last=false"], capsys)[1]
    assert "upper bound" not in fp32 and TOTAL.search(out).groups() == TOTAL.search(fp32).groups()


LOADER_WARNING = "loader workers per trial: too few to decode images at the GPU's pace planned here"


GPUS = ["--dry-run", "--plan-gpus", "8", "--storage-path", "ray"]


@pytest.mark.parametrize("argv, warned", [
    (GPUS, "1 CPU and 0 loader workers per trial"),  # the defaults
    (GPUS + ["--cpus-per-trial", "6"], "6 CPU and 0 loader workers per trial"),
    (GPUS + ["--set", "num_workers=3"], "1 CPU and 3 loader workers per trial"),
    (GPUS + ["--cpus-per-trial", "2", "--set", "num_workers=1"], None),
    (["--dry-run", "--gpus-per-trial", "0", "--storage-path", "ray"], None),  # CPU trials: the CPU is the pace
])
def test_a_gpu_trial_of_image_files_with_one_cpu_or_no_loader_worker_is_warned_once(argv, warned, tmp_path,
                                                                                    monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_main(ABLATION, argv, capsys)
    assert code == 0, out
    assert out.count(LOADER_WARNING) == (warned is not None)
    if warned is not None:
        assert f"  warning: {warned}: too few" in out and "--cpus-per-trial N+1 --set num_workers=N" in out


def test_in_memory_digits_are_not_warned_about_the_loader(tmp_path, monkeypatch, capsys):
    study = Study(name="toy", dataset="embedded", tasks=("digits->digits_photo",), variants=("srdc",), seeds=(0,))
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_main(study, ["--dry-run", "--plan-gpus", "1", "--storage-path", "ray"], capsys)
    assert code == 0 and "resources per trial: 1 CPU, 1 GPU" in out and LOADER_WARNING not in out


@pytest.mark.parametrize("argv, message", [
    (["--plan-gpus", "8"], "--plan-gpus 8: plans a --dry-run for a cluster of N > 0 GPUs; add --dry-run"),
    (["--dry-run", "--plan-gpus", "8", "--gpus-per-trial", "0"], "--plan-gpus plans GPU trials, but "
                                                                   "--gpus-per-trial 0 runs them on CPUs"),
])
def test_plan_gpus_needs_a_dry_run_of_gpu_trials(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(ABLATION, argv, capsys)
    assert code == 2 and message in err


def test_a_ray_address_nothing_answers_at_is_one_line_at_once(tmp_path, monkeypatch, capsys, without_ray):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(ABLATION, ["--dry-run", "--address", f"127.0.0.1:{free_port()}"], capsys)
    assert code == 2 and "no Ray cluster answers" in err and "--plan-gpus N" in err


@pytest.mark.integration
def test_the_breakdowns_row_is_what_the_planner_prices_a_cpu_study_with(tmp_path, monkeypatch):
    costs = tmp_path / "costs.json"
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "epoch_breakdown.py"), "--dataset", "synthetic",
                    "--backbone", "digits_cnn", "--image_size", "28", "--source_size", "128", "--target_size", "64",
                    "--classes", "10", "--epochs", "1", "--kmeans_n", "200", "--kmeans_d", "16", "--device", "cpu",
                    "--write_costs", str(costs)], check=True, capture_output=True, cwd=REPO,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    row = table_row(costs, backbone="digits_cnn", image_size=28, batch_size=64, dtype="fp32", device="cpu")
    assert row["status"] == "measured" and "epoch_breakdown.py" in row["provenance"]["command"]
    assert row["iteration_s_one_batch"] > 0 and row["iteration_s_two_batches"] > 0 and row["prepare_s_per_image"] > 0

    study = Study(name="toy", dataset="embedded", tasks=("digits->digits_photo",), variants=("source_only", "srdc"),
                  seeds=(0, 1), config={"epochs": 3})
    monkeypatch.chdir(tmp_path)
    launch = resolve_launch(study, ["--dry-run", "--gpus-per-trial", "0", "--storage-path", "ray"])
    planned = dry_run(study, launch, costs).sweeps[0]
    config = SRDCConfig(dataset="embedded")
    source, target = (len(load_one_domain("embedded", domain, config)) for domain in ("digits", "digits_photo"))
    prepare = 4 * (source + target) * row["prepare_s_per_image"]
    expected = {"source_only": 3 * batches(source) * row["iteration_s_one_batch"] + prepare,
                "srdc": 3 * max(batches(source), batches(target)) * row["iteration_s_two_batches"] + prepare}
    assert [trial.seconds for trial in planned.trials] == pytest.approx(
        [expected[variant] for variant in study.variants for _ in study.seeds])
    assert planned.resources == {"cpu": 1.0, "gpu": 0.0} and planned.unit == "CPU"
    assert not (tmp_path / "ray").exists()


@pytest.mark.parametrize("variant, phases, draws", [
    ("srdc_no_struct", ["source", "adapt", "adapt"], "2x1 (1 ep), 3x2 (2 ep)"),  # source pre-training, clustering
    ("oracle", ["oracle"] * 3, "3x1"),
])
def test_the_dry_run_prices_the_iterations_a_run_trains_in_each_phase(variant, phases, draws):
    # batches of 150: 448 source images make 2 a pass, 451 target images 3
    config = SRDCConfig(dataset="embedded", source="digits_photo", target="digits_color", variant=variant, epochs=3,
                        source_pretrain_epochs=1, batch_size=150, device="cpu")
    trainer = Trainer(config)
    trainer.fit()
    segments = schedule(config, DataFacts().run(config))
    planned = [segment.iterations for segment in segments for _ in range(segment.epochs)]
    assert [row["phase"] for row in trainer.history[1:]] == phases
    assert [row["iterations"] for row in trainer.history[1:]] == planned
    assert segments_text(segments) == draws


@pytest.mark.integration
def test_the_cluster_of_a_running_ray_session_sets_how_many_run_at_once(ray_cluster, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_main(ABLATION, ["--dry-run", "--smoke-test", "--gpus-per-trial", "0"], capsys)
    assert code == 0, out
    assert "cluster: the running Ray session: 0 GPUs, 2 CPUs" in out
    assert "at once: 2 (2 CPUs / 1 per trial), 30 wave(s)" in out and list(tmp_path.iterdir()) == []
