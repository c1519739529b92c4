"""SRDCConfig: round trip, unknown fields, task parsing, the variants' switches, range and choice errors, each option
declared once with its group and identity."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from srdc.config import COMMON_GROUPS, GROUPS, SRDCConfig, options
from srdc.errors import SRDCInputError
from srdc.methods import VARIANTS, switches

RANGES = {name: declared.range for name, declared in options().items() if declared.range is not None}
CHOICES = {name: declared.choices for name, declared in options().items() if declared.choices is not None}


def test_to_dict_from_dict_round_trip():
    config = SRDCConfig(variant="srdc_no_softsel", lambda_scale=0.5, soft_source_selection=True, max_samples=40)
    values = config.to_dict()
    assert values["lambda_scale"] == 0.5 and values["soft_source_selection"] is True
    assert SRDCConfig.from_dict(values) == config
    assert SRDCConfig.from_dict(values).to_dict() == values


def test_unknown_field_is_an_error_naming_it():
    with pytest.raises(SRDCInputError, match=r"unknown config field\(s\): lamda, zzz; known: .*lambda_scale"):
        SRDCConfig.from_dict({"lamda": 0.5, "zzz": 1})


@pytest.mark.parametrize(("task", "source", "target"), [
    ("A->W", "A", "W"), ("A→W", "A", "W"), (" art -> real_world ", "art", "real_world"),
    ("digits->digits-photo", "digits", "digits-photo"),
])
def test_task_sets_source_and_target(task, source, target):
    config = SRDCConfig(task=task)
    assert (config.source, config.target, config.task) == (source, target, None)
    assert config.task_name == f"{source}->{target}"


@pytest.mark.parametrize("task", ["A-W", "A->", "->W", "AW"])
def test_unreadable_task_is_an_error(task):
    with pytest.raises(SRDCInputError, match="cannot read task"):
        SRDCConfig(task=task)


# variant -> (structural_source_reg, feature_discrimination, soft_source_selection, target_clustering, pretrain)
SWITCHES = {
    "source_only": (True, False, False, False, 0),
    "srdc_no_struct": (False, True, False, True, 2),
    "srdc_no_featdisc": (True, False, True, True, 0),
    "srdc_no_softsel": (True, True, False, True, 0),
    "srdc": (True, True, True, True, 0),
    "oracle": (False, False, False, False, 0),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_switches_per_variant(variant):
    used = switches(SRDCConfig(variant=variant, epochs=20))
    assert (used.structural_source_reg, used.feature_discrimination, used.soft_source_selection,
            used.target_clustering, used.pretrain_epochs) == SWITCHES[variant]


def test_explicit_switches_override_the_variant_and_pretraining_follows():
    used = switches(SRDCConfig(variant="srdc", soft_source_selection=False, feature_discrimination=False))
    assert used.structural_source_reg
    assert not used.soft_source_selection and not used.feature_discrimination

    def pretrain(**values):
        return switches(SRDCConfig(**values)).pretrain_epochs

    assert pretrain(variant="srdc", structural_source_reg=False, epochs=30) == 3  # 10% of the epochs
    assert pretrain(variant="srdc_no_struct", epochs=5, source_pretrain_epochs=9) == 4
    assert pretrain(variant="srdc_no_struct", epochs=5) == 1  # at least one
    # with structural source regularisation: none unless asked for (a warm-up for a network trained from scratch)
    assert pretrain(variant="srdc", epochs=6, source_pretrain_epochs=3) == 3
    assert pretrain(variant="source_only", epochs=6, source_pretrain_epochs=3) == 0


def test_a_variant_outside_the_paper_has_no_srdc_component_unless_set():
    used = switches(SRDCConfig(variant="toy"))  # the method registry, not the config, decides whether it exists
    assert not (used.structural_source_reg or used.feature_discrimination or used.soft_source_selection
                or used.target_clustering)
    assert used.pretrain_epochs == 0
    assert switches(SRDCConfig(variant="toy", feature_discrimination=True)).feature_discrimination


@pytest.mark.parametrize(("values", "message"), [
    ({"epochs": 0}, "epochs must be >= 1, got 0"),
    ({"batch_size": 1}, "batch_size must be >= 2, got 1"),
    ({"setting": "online"}, "unknown setting 'online'; choose one of: transductive, inductive"),
    ({"feature_kernel": "gauss"}, "unknown feature_kernel 'gauss'; choose one of: paper, student_t"),
    ({"device": "tpu"}, "unknown device 'tpu'"),
    ({"lr": -1.0}, r"lr must be > 0, got -1.0"),
    ({"max_samples": 0}, r"max_samples must be >= 1 or None, got 0"),
    ({"momentum": 1.0}, r"momentum must be in \[0, 1\), got 1.0"),
    ({"lr": math.inf}, r"lr must be a finite number > 0, got inf"),
    ({"epochs": 2.5}, r"epochs must be an integer >= 1, got 2.5"),
    ({"image_size": 4}, r"image_size must be >= 8 or None, got 4"),
])
def test_range_and_choice_errors(values, message):
    with pytest.raises(SRDCInputError, match=message):
        SRDCConfig(**values)


# -- properties of the range checks (hypothesis) ----------------------------------------------------------------
PROPERTY = settings(deadline=None, database=None, max_examples=60)


def _integer_field(name: str) -> bool:
    return options()[name].type.startswith("int")


def _optional_field(name: str) -> bool:
    return "None" in options()[name].type


def in_range(name: str) -> st.SearchStrategy:
    """Every value the field accepts."""
    allowed = RANGES[name]
    if _integer_field(name):
        low = int(allowed.low) + (1 if allowed.low_open else 0)
        high = int(allowed.high) - 1 if allowed.high is not None else low + 10**6
        values = st.integers(min_value=low, max_value=high)
    else:
        values = st.floats(min_value=allowed.low, max_value=allowed.high, exclude_min=allowed.low_open,
                           exclude_max=allowed.high is not None, allow_nan=False, allow_infinity=False)
    return values | st.none() if _optional_field(name) else values


def out_of_range(name: str) -> st.SearchStrategy:
    """Values the field refuses: below, above, not finite, of the wrong type."""
    allowed = RANGES[name]
    wrong_type = st.sampled_from(["1", True, [1]])
    if _integer_field(name):
        low = int(allowed.low) + (1 if allowed.low_open else 0)
        values = st.integers(max_value=low - 1) | st.floats() | wrong_type
        if allowed.high is not None:
            values |= st.integers(min_value=int(allowed.high))
        return values
    values = (st.floats(max_value=allowed.low, exclude_max=not allowed.low_open)
              | st.sampled_from([math.nan, math.inf, -math.inf]) | wrong_type)
    if allowed.high is not None:
        values |= st.floats(min_value=allowed.high)
    return values


@pytest.mark.parametrize("name", sorted(RANGES))
@PROPERTY
@given(data=st.data())
def test_every_value_in_range_builds(name, data):
    value = data.draw(in_range(name))
    assert getattr(SRDCConfig(**{name: value}), name) == value


@pytest.mark.parametrize("name", sorted(RANGES))
@PROPERTY
@given(data=st.data())
def test_every_value_out_of_range_is_one_line_naming_the_field(name, data):
    value = data.draw(out_of_range(name))
    with pytest.raises(SRDCInputError) as error:
        SRDCConfig(**{name: value})
    message = str(error.value)
    assert message.startswith(f"{name} must be ") and "\n" not in message


def test_every_numeric_field_with_a_natural_range_is_checked():
    assert set(RANGES) >= {"lr", "epochs", "batch_size", "max_samples", "momentum", "weight_decay", "lambda_scale",
                           "lambda_gamma", "lr_alpha", "lr_beta", "centres_lr_mult", "backbone_lr_mult",
                           "kmeans_iters", "kmeans_chunk", "bottleneck_dim", "num_workers", "image_size",
                           "source_pretrain_epochs", "split_seed"}


@st.composite
def configs(draw) -> SRDCConfig:
    """Any valid config: every range-checked field in range, every choice field one of its values."""
    values = {name: draw(in_range(name)) for name in RANGES}
    values.update({name: draw(st.sampled_from(allowed)) for name, allowed in CHOICES.items()})
    values.update({name: draw(st.sampled_from([None, True, False]))
                   for name in ("structural_source_reg", "feature_discrimination", "soft_source_selection")})
    values["variant"] = draw(st.sampled_from(VARIANTS))
    return SRDCConfig(**values)


@PROPERTY
@given(config=configs())
def test_from_dict_of_to_dict_round_trips(config):
    assert SRDCConfig.from_dict(config.to_dict()) == config
    assert SRDCConfig.from_dict(config.to_dict()).to_dict() == config.to_dict()


def test_every_option_is_declared_once_with_a_known_group_and_its_help():
    declared = options()
    assert list(declared) == [name for name in SRDCConfig.__dataclass_fields__ if name != "added"]
    assert {option.group for option in declared.values()} == set(GROUPS)
    assert set(COMMON_GROUPS) < set(GROUPS)
    assert all(option.help.strip() for option in declared.values())
    assert all(SRDCConfig().to_dict()[name] == option.default for name, option in declared.items())


def test_the_identity_leaves_out_where_and_how_fast_a_run_goes_and_nothing_else():
    config = SRDCConfig()
    left_out = set(config.to_dict()) - set(config.identity())
    assert left_out == {"device", "num_workers", "pin_memory", "data_root", "path_prefix", "eval_batch_size",
                        "compile", "image_cache", "figures", "figures_budget", "workers"}
    assert SRDCConfig(device="cpu", figures=False).identity() == config.identity()
    assert SRDCConfig(lr=0.02).identity() != config.identity()
