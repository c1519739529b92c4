"""The plan: a study's grid as declared, resolved against its command line into Tune's param space, and the check
of its data before launch."""

import dataclasses
import json

import pytest
from ray import tune
from ray.tune.search.variant_generator import generate_variants
from study_helpers import load_declaration, plan_of

from srdc.config import SRDCConfig
from srdc.data import DATASETS, DatasetSpec, DomainFacts, describe_domain, load_one_domain
from srdc.data.base import domain_facts
from srdc.data.embedded import QUARTER_SIZES
from srdc.errors import SRDCInputError
from srdc.harness.declarations import Study
from srdc.harness.options import build_parser, launch_from_args
from srdc.harness.outcome import summary_tables
from srdc.harness.plan import check_plan, grid_configs, param_space
from srdc.harness.tuner import trial_resources
from srdc.trial_config import run_configs

SMOKE_TASKS = {"digits->digits_photo": "A->W", "digits->digits_color": "A->D", "digits_color->digits": "D->A",
               "digits_photo->digits": "W->A"}


ABLATION = load_declaration("ablation_office31")


def tune_configs(plan) -> list[dict]:
    """What Tune's grid generator makes of the param space (grid_search and sample_from resolved)."""
    return [config for _, config in generate_variants(param_space(plan))]


def by_cell(configs: list[dict]) -> dict:
    return {(c["task"], c["variant"], c["seed"]): c for c in configs}


# -- grids ----------------------------------------------------------------------------------------------------
def test_the_ablation_grid_is_table_1_with_the_released_codes_amazon_override():
    plan = plan_of(ABLATION, "--data-root", "/data")
    configs = grid_configs(plan)
    assert len(configs) == 5 * 4 * 3
    assert by_cell(tune_configs(plan)) == by_cell(configs)
    assert {c["dataset"] for c in configs} == {"office31"} and {c["epochs"] for c in configs} == {200}
    assert {c["task"] for c in configs if c.get("mu_init") == "target"} == {"D->A", "W->A"}
    assert all(c.get("mu_init", "mean") == "mean" for c in configs if c["task"] in ("A->W", "A->D"))
    assert {c["study"] for c in configs} == {"ablation_office31"} and configs[0]["data_root"] == "/data"
    assert all(run_configs(c)[0].dataset == "office31" for c in configs)


def test_the_smoke_test_keeps_the_grid_shape_on_the_embedded_domains():
    plan = plan_of(ABLATION, "--smoke-test")
    configs = tune_configs(plan)
    assert by_cell(configs) == by_cell(grid_configs(plan)) and len(configs) == 60
    assert set(plan.tasks) == set(SMOKE_TASKS) and plan.name == "ablation_office31-smoke"
    assert {c["dataset"] for c in configs} == {"embedded"} and {c["epochs"] for c in configs} == {2}
    # the amazon override follows amazon's stand-in
    assert {c["task"] for c in configs if c.get("mu_init") == "target"} == {"digits_color->digits",
                                                                           "digits_photo->digits"}
    assert plan.study_params["seeds"] == [0, 1, 2] and plan.study_params["smoke_test"] is True
    # which stand-in pair plays which Office-31 task: the tables name their columns after it
    assert json.loads(plan.study_params["stand_ins"]) == SMOKE_TASKS
    assert "stand_ins" not in plan_of(ABLATION).study_params


def test_command_line_slices_epochs_and_overrides():
    plan = plan_of(ABLATION, "--smoke-test", "--tasks", "W->A", "--variants", "srdc", "--seeds", "4", "5",
                   "--epochs", "3", "--set", "lr=0.02", "--set", "bf16=true")
    assert [(c["task"], c["seed"], c["epochs"], c["lr"], c["bf16"], c["mu_init"]) for c in tune_configs(plan)] == \
        [("digits_photo->digits", 4, 3, 0.02, True, "target"), ("digits_photo->digits", 5, 3, 0.02, True, "target")]


def test_extra_config_dimensions_cross_the_grid_and_split_the_tables():
    study = Study(name="lambda", dataset="embedded", tasks=("digits->digits_photo", "digits->digits_color"),
                  variants=("srdc",), seeds=(0, 1), grid={"lambda_scale": [0.5, 1.0]}, smoke=None)
    plan = plan_of(study)
    configs = tune_configs(plan)
    assert len(configs) == 2 * 2 * 2
    assert sorted({c["lambda_scale"] for c in configs}) == [0.5, 1.0]
    records = [{**c, "status": "FINISHED", "acc_best_oracle": 50.0 + c["seed"] + 10 * c["lambda_scale"],
                "acc_labelfree": 40.0, "acc_last": 45.0} for c in configs]
    text = summary_tables(study, plan, records)
    title = "**Study lambda lambda_scale=0.5: embedded, transductive, {}**"
    assert title.format("oracle selection (target labels)") in text and title.format("label-free selection") in text
    assert "| srdc | 55.5±0.7 | 55.5±0.7 | 55.5 |" in text and "| srdc | 60.5±0.7 | 60.5±0.7 | 60.5 |" in text


def test_a_smoke_tests_tables_name_each_stand_in_after_its_office31_task():
    plan = plan_of(ABLATION, "--smoke-test", "--seeds", "0")
    records = [{**c, "status": "FINISHED", "acc_best_oracle": 50.0, "acc_labelfree": 40.0, "acc_last": 45.0}
               for c in tune_configs(plan)]
    text = summary_tables(ABLATION, plan, records)
    columns = sorted(f"{task} ({stand_in})" for stand_in, task in SMOKE_TASKS.items())  # no paper order: by name
    header = "| variant | " + " | ".join(columns) + " | Avg |"
    assert columns[0] == "A->D (digits->digits_color)"
    assert text.count(header) == 2  # the oracle and the label-free tables
    assert "after 2 epochs of training, 1 seed per cell (a single run: no mean or std over seeds)" in text


def test_a_search_dimension_goes_to_tune_as_it_is():
    study = Study(name="search", dataset="embedded", tasks=("digits->digits_photo",), seeds=(0,),
                  grid={"lr": tune.loguniform(1e-3, 1e-1)}, smoke=None)
    plan = plan_of(study)
    assert param_space(plan)["lr"] is study.grid["lr"] and param_space(plan)["seed"] == 0
    assert plan.study_params["grid.lr"] == "LogUniform (0.001, 0.1)"
    assert [config.get("lr") for config in grid_configs(plan)] == [None]  # sampled by Tune, not enumerated


def test_every_trial_asks_for_cpus_even_with_a_fractional_gpu():
    args = build_parser(ABLATION).parse_args(["--gpus-per-trial", "0.5", "--cpus-per-trial", "2"])
    assert trial_resources(launch_from_args(ABLATION, args)) == {"cpu": 2.0, "gpu": 0.5}




# -- the data check before launch: from files and metadata, no tensor loaded -------------------------------------
def never_loaded(domain, config):
    raise AssertionError(f"{domain} was loaded")


def without_loading(monkeypatch, name: str) -> DatasetSpec:
    """The dataset ``name`` with a loader that fails the test when called."""
    spec = dataclasses.replace(DATASETS.lookup(name), load_domain=never_loaded)
    monkeypatch.setitem(DATASETS, name, spec)
    return spec


def test_the_smoke_study_is_checked_without_loading_its_data_and_tells_each_quarters_size(monkeypatch):
    plan = plan_of(ABLATION, "--smoke-test")
    loaded = {name: load_one_domain("embedded", name, SRDCConfig()) for name in QUARTER_SIZES}
    without_loading(monkeypatch, "embedded")
    check_plan(plan)
    for name, domain in loaded.items():
        assert describe_domain("embedded", name, SRDCConfig()) == domain_facts(domain) == DomainFacts(
            len(domain), 10, side=28)


def test_a_class_count_mismatch_and_missing_files_are_caught_before_launch_without_loading(monkeypatch, tmp_path):
    def facts(domain, config):
        return DomainFacts(100, 10 if domain == "one" else 9)

    monkeypatch.setitem(DATASETS, "two_spaces", DatasetSpec("two_spaces", never_loaded, domains=("one", "other"),
                                                            describe_domain=facts, default_backbone="digits_cnn"))
    study = Study(name="mismatch", dataset="two_spaces", tasks=("one->other",), variants=("srdc",), seeds=(0,),
                  smoke=None)
    with pytest.raises(SRDCInputError, match="class-count mismatch: source 'one' has 10 classes, target 'other' "
                                             "has 9"):
        check_plan(plan_of(study))
    without_loading(monkeypatch, "digits")
    digits = Study(name="digits", dataset="digits", tasks=("usps->mnist",), variants=("srdc",), seeds=(0,),
                   smoke=None)
    with pytest.raises(SRDCInputError, match="USPS not found"):
        check_plan(plan_of(digits, "--data-root", str(tmp_path)))


def test_an_incomplete_benchmark_domain_is_caught_before_launch_without_loading(tiny, tmp_path, monkeypatch):
    without_loading(monkeypatch, tiny.name)
    study = Study(name="tiny", dataset=tiny.name, tasks=("A->W",), variants=("srdc",), seeds=(0,), smoke=None)
    check_plan(plan_of(study, "--data-root", str(tmp_path)))
    assert describe_domain(tiny.name, "W", SRDCConfig(data_root=str(tmp_path))) == DomainFacts(
        tiny.domain("W").count, len(tiny.classes), in_memory=False)
    next((tmp_path / tiny.name / "webcam" / "images").rglob("*.jpg")).unlink()
    with pytest.raises(SRDCInputError, match="incomplete or different copy"):
        check_plan(plan_of(study, "--data-root", str(tmp_path)))
