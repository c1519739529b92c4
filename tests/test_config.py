"""SRDCConfig: round trip, unknown fields, task parsing, the variants' switches, range and choice errors."""

import pytest

from srdc.config import VARIANTS, SRDCConfig
from srdc.errors import SRDCInputError


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
    config = SRDCConfig(variant=variant, epochs=20)
    assert (config.uses_structural_source_reg, config.uses_feature_discrimination,
            config.uses_soft_source_selection, config.uses_target_clustering, config.pretrain_epochs) == \
        SWITCHES[variant]


def test_explicit_switches_override_the_variant_and_pretraining_follows():
    config = SRDCConfig(variant="srdc", soft_source_selection=False, feature_discrimination=False)
    assert config.uses_structural_source_reg
    assert not config.uses_soft_source_selection and not config.uses_feature_discrimination
    no_struct = SRDCConfig(variant="srdc", structural_source_reg=False, epochs=30)
    assert no_struct.pretrain_epochs == 3  # 10% of the epochs
    assert SRDCConfig(variant="srdc_no_struct", epochs=5, source_pretrain_epochs=9).pretrain_epochs == 4
    assert SRDCConfig(variant="srdc_no_struct", epochs=5).pretrain_epochs == 1  # at least one


def test_a_variant_outside_the_paper_has_no_srdc_component_unless_set():
    config = SRDCConfig(variant="toy")  # the method registry, not the config, decides whether it exists
    assert not (config.uses_structural_source_reg or config.uses_feature_discrimination
                or config.uses_soft_source_selection or config.uses_target_clustering)
    assert config.pretrain_epochs == 0
    assert SRDCConfig(variant="toy", feature_discrimination=True).uses_feature_discrimination


@pytest.mark.parametrize(("values", "message"), [
    ({"epochs": 0}, "epochs must be >= 1, got 0"),
    ({"batch_size": 1}, "batch_size must be >= 2, got 1"),
    ({"setting": "online"}, "unknown setting 'online'; choose one of: transductive, inductive"),
    ({"feature_kernel": "gauss"}, "unknown feature_kernel 'gauss'; choose one of: paper, student_t"),
    ({"device": "tpu"}, "unknown device 'tpu'"),
])
def test_range_and_choice_errors(values, message):
    with pytest.raises(SRDCInputError, match=message):
        SRDCConfig(**values)
