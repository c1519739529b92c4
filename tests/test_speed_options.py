"""Speed options (issue 12 item 6), on a CPU: bf16 and channels-last resolve to auto (CUDA only) and the summary
records what ran; the SGD kernels (foreach here, fused on CUDA) change no number; the preparation pass runs in
inference mode and its features do not depend on its batch size; ``compile`` is accepted and checkpoints load
between compiled and uncompiled runs. Their GPU figures come from ``benchmarks/gpu_throughput.py``."""

import io

import pytest
import torch

from srdc.cli import build_parser
from srdc.config import SRDCConfig, options
from srdc.data import load_task
from srdc.errors import SRDCInputError
from srdc.trainer import Trainer

NEW_OPTIONS = ("bf16", "channels_last", "eval_batch_size", "compile")


def small_config(**overrides) -> SRDCConfig:
    return SRDCConfig(**{"epochs": 1, "batch_size": 32, "max_samples": 300, "device": "cpu", **overrides})


@pytest.fixture(scope="module")
def task():
    return load_task(small_config())


def roundtrip(state: dict) -> dict:
    """``state`` through a file read as checkpoints are."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def first_conv(trainer: Trainer) -> torch.Tensor:
    return next(m.weight for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d))


def test_bf16_and_channels_last_are_auto_by_default_on_cuda_only():
    auto = SRDCConfig()
    assert (auto.bf16, auto.channels_last) == (None, None)
    assert [auto.uses_bf16(cuda) for cuda in (True, False)] == [True, False]
    assert [auto.uses_channels_last(cuda) for cuda in (True, False)] == [True, False]
    fp32 = SRDCConfig(bf16=False, channels_last=False)
    assert (fp32.uses_bf16(True), fp32.uses_channels_last(True)) == (False, False)
    forced = SRDCConfig(bf16=True, channels_last=True)
    assert (forced.uses_bf16(False), forced.uses_channels_last(False)) == (False, True)  # no autocast on a CPU


def test_a_cpu_run_is_fp32_contiguous_with_foreach_sgd_and_its_summary_says_so(task):
    trainer = Trainer(small_config(), task)
    trainer.fit()
    resolved = trainer.summary()["resolved"]
    assert {key: resolved[key] for key in ("device", "precision", "channels_last", "compile", "sgd")} == {
        "device": "cpu", "precision": "fp32", "channels_last": False, "compile": False, "sgd": "foreach"}
    assert first_conv(trainer).is_contiguous()
    assert {(g["foreach"], g["fused"]) for g in trainer.optimizer.param_groups} == {(True, False)}


def test_channels_last_asked_for_on_a_cpu_lays_out_the_model_so():
    trainer = Trainer(small_config(channels_last=True, bf16=True))
    assert first_conv(trainer).is_contiguous(memory_format=torch.channels_last)
    assert not first_conv(trainer).is_contiguous()
    assert trainer.execution()["precision"] == "fp32" and trainer.execution()["channels_last"] is True


def test_foreach_sgd_gives_the_per_parameter_loops_parameters_bit_for_bit(task, monkeypatch):
    foreach = Trainer(small_config(), task)
    foreach.fit()
    monkeypatch.setattr(Trainer, "_sgd_kernels", lambda self: {"fused": False, "foreach": False})
    loop = Trainer(small_config(), task)
    loop.fit()
    assert {g["foreach"] for g in loop.optimizer.param_groups} == {False}
    for (name, a), b in zip(foreach.model.state_dict().items(), loop.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    for a, b in zip(foreach.optimizer.state.values(), loop.optimizer.state.values(), strict=True):
        assert torch.equal(a["momentum_buffer"], b["momentum_buffer"])
    assert foreach.history[-1]["loss_total"] == loop.history[-1]["loss_total"]


def test_a_checkpoint_from_another_device_continues_with_this_devices_sgd_kernels(task):
    trainer = Trainer(small_config(), task)
    trainer.fit()
    state = trainer.state_dict()
    for group in state["optimizer"]["param_groups"]:  # as a CUDA run saves them
        group.update(fused=True, foreach=False)
    resumed = Trainer(small_config(), task)
    resumed.load_state_dict(roundtrip(state))
    assert {(g["foreach"], g["fused"]) for g in resumed.optimizer.param_groups} == {(True, False)}


def test_the_preparation_pass_runs_in_inference_mode_and_gives_normal_tensors(task):
    trainer = Trainer(small_config(), task)
    modes = []
    trainer.model.register_forward_hook(lambda *_: modes.append(torch.is_inference_mode_enabled()))
    features = trainer.extract(task.target)
    assert modes and all(modes)
    tensors = [*features.spaces.values(), features.logits, features.labels]
    assert not any(t.is_inference() for t in tensors)  # usable by the plan in training (autograd, in place)
    assert features.logits.shape == (len(task.target), task.num_classes)


@pytest.mark.parametrize("eval_batch_size", [1, 7, 100, 1000])
def test_preparation_features_do_not_depend_on_the_eval_batch_size(task, eval_batch_size):
    reference = Trainer(small_config(), task).extract(task.target)
    other = Trainer(small_config(eval_batch_size=eval_batch_size), task).extract(task.target)
    for space, values in reference.spaces.items():
        torch.testing.assert_close(other.spaces[space], values, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(other.logits, reference.logits, rtol=1e-5, atol=1e-6)
    assert torch.equal(other.labels, reference.labels)


def test_eval_batch_size_must_be_positive():
    with pytest.raises(SRDCInputError, match="eval_batch_size must be >= 1, got 0"):
        SRDCConfig(eval_batch_size=0)


def test_compile_is_accepted_and_checkpoints_load_between_compiled_and_uncompiled_runs(task):
    plain = Trainer(small_config(), task)
    plain.fit()
    compiled = Trainer(small_config(compile=True), task)  # compiles lazily: at its first forward, not here
    assert compiled.model._compiled_call_impl is not None and compiled.execution()["compile"] is True
    assert list(compiled.model.state_dict()) == list(plain.model.state_dict())  # no "_orig_mod." prefix
    compiled.load_state_dict(roundtrip(plain.state_dict()))
    again = Trainer(small_config(), task)
    again.load_state_dict(roundtrip(compiled.state_dict()))
    for (name, a), b in zip(plain.model.state_dict().items(), again.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert again.history == plain.history


@pytest.mark.slow
def test_a_compiled_run_reaches_the_uncompiled_runs_accuracy(task):
    """Slow: inductor compiles C++ kernels for the CPU, about 2 minutes cold on this 2-core machine (measured: 113 s
    for one epoch; 31 s for this test with inductor's on-disk cache warm), over the 60 s a fast test may take."""
    plain = Trainer(small_config(epochs=2), task)
    compiled = Trainer(small_config(epochs=2, compile=True), task)
    plain.fit()
    compiled.fit()
    for a, b in zip(plain.history, compiled.history, strict=True):
        assert abs(a["acc_target"] - b["acc_target"]) <= 1.0
    assert compiled.history[-1]["loss_total"] == pytest.approx(plain.history[-1]["loss_total"], rel=1e-3)


def test_the_new_options_are_described_and_parsed_by_srdc_train():
    parser = build_parser()
    helps = {action.dest: action.help for action in parser._actions}
    for name in NEW_OPTIONS:
        assert helps[name].startswith(options()[name].help), name
    assert [parser.parse_args(["--bf16", text]).bf16 for text in ("none", "true", "false")] == [None, True, False]
    args = parser.parse_args(["--channels_last", "none", "--eval_batch_size", "512", "--compile", "true"])
    assert (args.channels_last, args.eval_batch_size, args.compile) == (None, 512, True)
