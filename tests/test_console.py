"""The console of a study (one line per trial event, a summary line every 30 s, Tune's table only with
``--verbose``) and of ``srdc-train`` (no placeholder for what an epoch does not have)."""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import pytest
from ray.tune.experiment import Trial
from study_helpers import load_declaration

from srdc.cli import format_row
from srdc.config import SRDCConfig
from srdc.harness.console import LIBRARY_LOGGERS, ConsoleProgress, elapsed
from srdc.harness.declarations import SMOKE_NOTE, Study
from srdc.harness.main import main
from srdc.harness.options import build_parser, launch_from_args, resolve_launch, save_launch
from srdc.harness.outcome import StudyOutcome
from srdc.harness.plan import plan_study
from srdc.harness.ray_compat import AUTH_LOGGER, AUTH_NOTICE, ProgressTable, dropped_log
from srdc.harness.tuner import Sweep, ray_session, run_config

COLUMNS = ["task", "variant", "seed"]
CONFIG = {"task": "digits->digits_photo", "variant": "srdc", "seed": 0, "lr": 0.01}
NAME = "trial t_00000 task=digits->digits_photo variant=srdc seed=0"
FINAL = {"epoch": 4, "acc_last": 40.0, "acc_best_oracle": 41.5, "acc_labelfree": 40.25}


@dataclass
class FakeTrial:
    """What :class:`ConsoleProgress` reads of a Tune trial."""

    trial_id: str = "t_00000"
    config: dict[str, Any] = field(default_factory=lambda: dict(CONFIG))
    last_result: dict[str, Any] = field(default_factory=dict)
    status: str = Trial.RUNNING
    checkpoint: Any = None
    path: str = "/results/study/t_00000"
    num_failures: int = 0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def console(epochs: int = 4) -> tuple[ConsoleProgress, io.StringIO, Clock]:
    out, clock = io.StringIO(), Clock()
    progress = ConsoleProgress(epochs, COLUMNS, max_failures=2, out=out, clock=clock)
    progress.setup(total_num_samples=2)
    return progress, out, clock


def lines(out: io.StringIO) -> list[str]:
    return out.getvalue().splitlines()


def test_each_trial_event_is_one_line_naming_the_trial_and_its_accuracies_by_selection():
    progress, out, _ = console()
    trial = FakeTrial()
    progress.on_trial_start(0, [trial], trial)
    trial.last_result = dict(FINAL)
    progress.on_trial_complete(1, [trial], trial)
    assert lines(out) == [f"{NAME}: started",
                          f"{NAME}: finished epoch 4/4: acc_last 40.0, acc_best_oracle 41.5, acc_labelfree 40.2"]


def test_a_trial_whose_figures_could_not_be_drawn_is_finished_and_names_why():
    progress, out, _ = console()
    trial = FakeTrial(last_result={**FINAL, "figures_failed": 1})
    progress.on_trial_complete(1, [trial], trial)
    assert lines(out) == [f"{NAME}: finished epoch 4/4: acc_last 40.0, acc_best_oracle 41.5, acc_labelfree 40.2; its "
                          "figures could not be drawn (why: /results/study/t_00000/figures/error.txt)"]


def test_a_retried_trial_says_so_and_continues_from_its_checkpoint():
    progress, out, _ = console()
    trial = FakeTrial(num_failures=1, checkpoint=object(), last_result={"epoch": 2})
    progress.on_trial_recover(3, [trial], trial)
    progress.on_trial_start(4, [trial], trial)
    trial.num_failures, trial.checkpoint = 2, None
    progress.on_trial_recover(5, [trial], trial)
    trial.num_failures = 3
    progress.on_trial_error(9, [trial], trial)
    assert lines(out) == [f"{NAME}: crashed; retry 1 of 2 (--max-failures), from its last checkpoint",
                          f"{NAME}: continues from its last checkpoint",
                          f"{NAME}: crashed; retry 2 of 2 (--max-failures), from the start (no checkpoint yet)",
                          f"{NAME}: failed, crashed 3 time(s) (--max-failures 2); its error: "
                          f"/results/study/t_00000/error.txt, its output: /results/study/t_00000/trial.log"]


def test_a_diverged_and_an_early_stopped_trial_are_not_called_finished():
    progress, out, _ = console()
    diverged = FakeTrial(last_result={"epoch": 1, "diverged": 1, "acc_last": 10.0})
    stopped = FakeTrial(trial_id="t_00001", config={"lr": 0.0123456}, last_result={"epoch": 2, "objective": 0.25})
    progress.columns = ["lr"]
    progress.on_trial_complete(2, [diverged], diverged)
    progress.on_trial_complete(2, [stopped], stopped)
    assert lines(out) == ["trial t_00000 lr=0.01: diverged after epoch 1/4 (its loss or metrics became NaN or "
                          "infinite; not retried; why: /results/study/t_00000/diverged.txt)",
                          "trial t_00001 lr=0.01235: stopped early by the scheduler at epoch 2/4: objective 0.25"]


def test_the_summary_line_comes_every_30_seconds_and_at_the_end_with_the_best_labelfree_result():
    progress, out, clock = console()
    done = FakeTrial(status=Trial.TERMINATED, last_result=dict(FINAL))
    better = FakeTrial(trial_id="t_00001", config={**CONFIG, "seed": 1}, status=Trial.TERMINATED,
                       last_result={**FINAL, "acc_labelfree": 55.0})
    running, pending = FakeTrial(trial_id="t_00002"), FakeTrial(trial_id="t_00003", status=Trial.PENDING)
    trials = [done, running, pending]
    clock.now += 29.0
    progress.on_step_end(5, trials)
    assert lines(out) == []
    clock.now += 1.0
    progress.on_step_end(6, trials)
    progress.on_step_end(7, trials)  # not again before another 30 s
    clock.now += 165.0
    progress.on_experiment_end([*trials, better])
    assert lines(out) == [f"1/3 trials done, 1 running, 0 failed, elapsed 30s, best so far: acc_labelfree 40.2 "
                          f"({NAME})",
                          "2/4 trials done, 1 running, 0 failed, elapsed 3m15s, best so far: acc_labelfree 55.0 "
                          "(trial t_00001 task=digits->digits_photo variant=srdc seed=1)"]


def test_the_summary_splits_what_ended_when_not_all_finished_and_ranks_a_search_by_its_objective():
    progress, out, _ = console()
    trials = [FakeTrial(status=Trial.TERMINATED, last_result={**FINAL, "objective": 0.5}),
              FakeTrial(trial_id="t_00001", status=Trial.TERMINATED, last_result={"epoch": 2, "objective": 0.75,
                                                                                   "acc_labelfree": 1.0}),
              FakeTrial(trial_id="t_00002", status=Trial.TERMINATED, last_result={"epoch": 1, "diverged": 1,
                                                                                   "objective": 9.0}),
              FakeTrial(trial_id="t_00003", status=Trial.ERROR)]
    progress.on_experiment_end(trials)
    assert lines(out) == ["3/4 trials done (1 finished, 1 stopped early, 1 diverged), 0 running, 1 failed, "
                          "elapsed 0s, best so far: objective 0.75 (trial t_00001 task=digits->digits_photo "
                          "variant=srdc seed=0)"]


def test_the_summary_counts_the_planned_trials_from_the_start():
    out = io.StringIO()
    progress = ConsoleProgress(4, COLUMNS, max_failures=2, planned=60, out=out, clock=Clock())
    progress.on_experiment_end([])
    created = [FakeTrial(trial_id=f"t_{i:05d}", status=Trial.TERMINATED, last_result=dict(FINAL)) for i in range(6)]
    progress.on_experiment_end([*created, FakeTrial(trial_id="t_00006")])  # --max-concurrent 1: Tune made 7 so far
    unplanned = ConsoleProgress(4, COLUMNS, max_failures=2, out=out, clock=Clock())
    unplanned.on_experiment_end(created[:2])
    assert [line.split(", elapsed")[0] for line in lines(out)] == [
        "0/60 trials done, 0 running, 0 failed", "6/60 trials done, 1 running, 0 failed",
        "2/2 trials done, 0 running, 0 failed"]


@pytest.mark.parametrize(("verbose", "level", "echo"), [(0, logging.WARNING, False), (1, logging.INFO, False),
                                                        (2, logging.INFO, True)])
def test_ray_mlflow_and_optuna_say_info_only_with_verbose_and_the_trials_output_only_from_vv(
        verbose, level, echo, monkeypatch):
    import ray

    started = {}
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: started.update(kwargs))
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    monkeypatch.setenv("MLFLOW_LOGGING_LEVEL", "unset below, restored after")
    monkeypatch.delenv("MLFLOW_LOGGING_LEVEL")
    before = {name: logging.getLogger(name).level for name in LIBRARY_LOGGERS}
    try:
        with ray_session(None, verbose):
            pass
        assert started == {"address": None, "include_dashboard": False, "log_to_driver": echo,
                           "logging_level": level}
        assert [logging.getLogger(name).level for name in ("ray", "mlflow", "optuna")] == [level] * 3
        assert os.environ["MLFLOW_LOGGING_LEVEL"] == logging.getLevelName(level)
        with ray_session("10.0.0.1:6379", verbose, dashboard=True):
            pass
        assert started["address"] == "10.0.0.1:6379" and started["include_dashboard"] is True
    finally:
        for name, old in before.items():
            logging.getLogger(name).setLevel(old)


def test_elapsed_time_is_short():
    assert [elapsed(s) for s in (0, 59.9, 60, 192, 3599, 3900)] == ["0s", "59s", "1m00s", "3m12s", "59m59s", "1h05m"]


def test_tunes_table_drops_the_staging_folder_that_is_not_where_the_results_are(capsys):
    ProgressTable()._print("== Status ==\nResult logdir: /tmp/ray/session_x/artifacts/s/driver_artifacts\n"
                           "Number of trials: 2/2 (2 PENDING)")
    assert capsys.readouterr().out == "== Status ==\nNumber of trials: 2/2 (2 PENDING)\n"


def test_rays_token_notice_is_dropped_while_ray_starts_and_nothing_else(caplog):
    logger = logging.getLogger(AUTH_LOGGER)
    with caplog.at_level(logging.INFO, logger=AUTH_LOGGER), dropped_log(AUTH_LOGGER, AUTH_NOTICE):
        logger.warning(f"{AUTH_NOTICE}. Set RAY_AUTH_MODE=disabled to opt out.")
        logger.warning("Token authentication is enabled but no token was found.")
    with caplog.at_level(logging.INFO, logger=AUTH_LOGGER):
        logger.warning(f"{AUTH_NOTICE}, after the block")
    assert [record.getMessage() for record in caplog.records] == [
        "Token authentication is enabled but no token was found.", f"{AUTH_NOTICE}, after the block"]


TINY = Study(name="console_tiny", dataset="embedded", tasks=("digits->digits_photo",), variants=("srdc",),
             seeds=(0, 1), config={"epochs": 1, "max_samples": 60, "batch_size": 16})


@pytest.mark.parametrize(("flags", "verbose", "table"), [((), 0, False), (("-v",), 1, True),
                                                        (("--verbose", "--verbose"), 2, True)])
def test_verbose_brings_back_tunes_status_table(flags, verbose, table, tmp_path):
    args = build_parser(TINY).parse_args([*flags, "--storage-path", str(tmp_path), "--tracking-uri",
                                          f"sqlite:///{tmp_path / 'm.db'}"])
    launch = launch_from_args(TINY, args)
    config = run_config(launch, Sweep(name="e", param_space={}, epochs=1, tracking="console_tiny",
                                      tracking_params={}, planned=2, parameter_columns=COLUMNS))
    assert launch.verbose == verbose and config.verbose == verbose
    assert isinstance(config.progress_reporter, ProgressTable) is table
    assert config.progress_reporter is None or table
    assert any(isinstance(callback, ConsoleProgress) for callback in config.callbacks)


def test_resume_takes_another_verbosity(tmp_path):
    where = ["--storage-path", str(tmp_path), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"]
    save_launch(resolve_launch(TINY, where))
    assert resolve_launch(TINY, [*where, "--resume", "-vv"]).verbose == 2


def test_epoch_0_prints_what_it_has_and_no_training_placeholders():
    from srdc.trainer import Trainer

    trainer = Trainer(SRDCConfig(epochs=1, max_samples=60, batch_size=16))
    trainer.fit()
    before, trained = (format_row(row, 1) for row in trainer.history)
    assert "nan" not in before and not any(word in before for word in ("loss", "lr ", "lambda"))
    assert before.startswith("epoch   0/1  acc_target ") and before.endswith("s")
    row = trainer.history[1]
    assert f"loss {row['loss_total']:.4f}  lr {row['lr']:.5f}  lambda {row['lambda']:.3f}" in trained


@pytest.mark.slow
def test_a_study_prints_one_line_per_trial_event_and_no_tune_table(tmp_path, ray_cluster, capsys):
    argv = ["--storage-path", str(tmp_path / "ray"), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    assert main(TINY, argv) == 0
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    events = [line.split(": ", 1)[1].split(" epoch")[0] for line in err if line.startswith("trial ")]
    assert sorted(events) == ["finished", "finished", "started", "started"]
    assert any(line.startswith("2/2 trials done, 0 running, 0 failed, elapsed ") for line in err)
    for noise in ("== Status ==", "Result logdir", "/tmp/ray", "Bracket", "Token authentication is enabled"):
        assert noise not in captured.out + captured.err
    assert f"Tune results: {tmp_path / 'ray' / 'console_tiny'}" in captured.out
    # --resume brings back the first run's RunConfig; its console is the continuing launch's
    assert main(TINY, [*argv, "--resume", "-v"]) == 0
    resumed = capsys.readouterr()
    assert "== Status ==" in resumed.out and "Result logdir" not in resumed.out + resumed.err
    assert any(line.startswith("2/2 trials done, 0 running, 0 failed") for line in resumed.err.splitlines())


@pytest.mark.parametrize("smoke", [True, False])
def test_the_smoke_tables_say_they_are_a_plumbing_check(smoke, tmp_path):
    study = load_declaration("ablation_office31")
    args = build_parser(study).parse_args([*(["--smoke-test"] if smoke else []), "--storage-path", str(tmp_path),
                                           "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"])
    launch = launch_from_args(study, args)
    text = StudyOutcome(plan_study(study, launch), launch, [], "TABLES", None).describe()
    assert (f"\n\n{SMOKE_NOTE}\n\nTABLES\n" in text) is smoke and ("plumbing check" in text) is smoke


def test_a_refused_trial_is_failed_not_retried_and_names_why():
    progress, out, _ = console()
    refused = FakeTrial(status=Trial.TERMINATED, last_result={"refused": 1})
    done = FakeTrial(trial_id="t_00001", status=Trial.TERMINATED, last_result=dict(FINAL))
    progress.on_trial_complete(1, [refused], refused)
    progress.on_experiment_end([refused, done])
    assert lines(out) == [f"{NAME}: failed, refused by its input (not retried; why: "
                          "/results/study/t_00000/refused.txt)",
                          "1/2 trials done, 0 running, 1 failed, elapsed 0s, best so far: acc_labelfree 40.2 "
                          "(trial t_00001 task=digits->digits_photo variant=srdc seed=0)"]
