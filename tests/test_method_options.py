"""A method's own options: the toy method (``tests/helpers/toys.py``) declares two in its module, and its one registry
line makes them config fields everywhere (``srdc-train --help`` under their group, ``--set``, a study's ``param_space``,
the trial's MLflow params, the resume identity), with no edit elsewhere. The study end to end, with the options in
its MLflow runs: ``tests/test_harness_plugins.py``."""

import pytest
from study_helpers import plan_of
from toys import TOY_ITERATIONS, ToyMethod

from srdc import cli
from srdc.config import GROUPS, SRDCConfig, groups, options, options_in
from srdc.errors import SRDCInputError
from srdc.harness.declarations import Study
from srdc.harness.plan import grid_configs, param_space
from srdc.harness.trainable import run_configs
from srdc.harness.tuner import tracked_config
from srdc.methods import METHODS, tracked_fields
from srdc.trainer import Trainer

TOY_OPTIONS = {"toy_iterations", "toy_pull_weight"}
TOY_STUDY = {"name": "toys", "dataset": "embedded", "tasks": ("digits->digits_photo",), "variants": ("toy",),
             "seeds": (0,), "config": {"epochs": 2, "max_samples": 100, "toy_iterations": 2}}


@pytest.fixture
def toy(monkeypatch):
    """The toy's one registry line, in this process."""
    monkeypatch.setitem(METHODS, "toy", ToyMethod)


def test_registering_the_method_adds_its_options_and_removing_it_removes_them():
    assert not TOY_OPTIONS & set(options())
    METHODS["toy"] = ToyMethod
    try:
        assert TOY_OPTIONS <= set(options()) and {options()[name].group for name in TOY_OPTIONS} == {"toy"}
        assert groups() == {**GROUPS, "toy": "toy: the toy method's own options"}
        config = SRDCConfig.from_dict({"variant": "toy", "toy_pull_weight": 0.5})
        assert (config.toy_iterations, config.toy_pull_weight) == (TOY_ITERATIONS, 0.5)
        assert {"toy_iterations": 3, "toy_pull_weight": 0.5}.items() <= config.to_dict().items()
        assert SRDCConfig.from_dict(config.to_dict()) == config
    finally:
        del METHODS["toy"]
    assert not TOY_OPTIONS & set(options()) and groups() == GROUPS
    with pytest.raises(SRDCInputError, match=r"unknown config field\(s\): toy_pull_weight"):
        SRDCConfig.from_dict({"toy_pull_weight": 0.5})


def test_its_options_are_srdc_train_options_under_their_group(toy):
    parser = cli.build_parser()
    (group,) = [group for group in parser._action_groups if group.title == "toy: the toy method's own options"]
    assert [action.dest for action in group._group_actions] == ["toy_iterations", "toy_pull_weight"]
    assert "toy: training iterations per epoch (default: 3)" in " ".join(parser.format_help().split())
    config = cli.config_from_args(parser.parse_args(["--variant", "toy", "--toy_iterations", "5",
                                                     "--toy-pull-weight", "0.25"]))
    assert (config.toy_iterations, config.toy_pull_weight) == (5, 0.25)
    with pytest.raises(SRDCInputError, match=r"^toy_iterations must be >= 1, got 0$"):
        cli.config_from_args(parser.parse_args(["--variant", "toy", "--toy_iterations", "0"]))


def test_its_options_are_in_a_studys_param_space_and_set_by_set(toy):
    plan = plan_of(Study(**TOY_STUDY), "--set", "toy_pull_weight=0.25")
    space = param_space(plan)
    assert (space["toy_iterations"], space["toy_pull_weight"]) == (2, 0.25)
    (trial,) = grid_configs(plan)
    (config,) = run_configs(trial)
    assert (config.variant, config.toy_iterations, config.toy_pull_weight) == ("toy", 2, 0.25)
    with pytest.raises(SRDCInputError, match="toy_iterations must be >= 1"):
        run_configs({**trial, "toy_iterations": 0})


def test_a_toy_trial_logs_its_options_and_no_other_methods(toy):
    (trial,) = grid_configs(plan_of(Study(**TOY_STUDY), "--set", "toy_pull_weight=0.25"))
    tracked = tracked_config(trial)
    assert (tracked["toy_iterations"], tracked["toy_pull_weight"]) == (2, 0.25)
    assert set(tracked_fields("toy")) <= set(tracked) and set(options_in(("data", "optimisation"))) <= set(tracked)
    assert not set(options_in(("clustering", "srdc", "release", "adversarial"))) & set(tracked)
    assert not TOY_OPTIONS & set(tracked_config({**trial, "variant": "srdc"}))


def test_its_options_belong_to_the_resume_identity(toy):
    small = {"variant": "toy", "epochs": 2, "batch_size": 32, "max_samples": 100, "device": "cpu"}
    trainer = Trainer(SRDCConfig.from_dict(small))
    trainer.initialise()
    with pytest.raises(SRDCInputError, match=r"config differs in: toy_pull_weight\)"):
        Trainer(SRDCConfig.from_dict({**small, "toy_pull_weight": 0.5})).load_state_dict(trainer.state_dict())
    same = Trainer(SRDCConfig.from_dict({**small, "device": "cpu", "figures": False}))
    same.load_state_dict(trainer.state_dict())
    assert same.method.anchor.item() == trainer.method.anchor.item()
