"""``srdc.base``: task names, the device, the random states, the registries and the entry-point wrapper."""

import random

import numpy as np
import pytest
import torch

from srdc.base import Registry, capture_rng, parse_task, resolve_device, restore_rng, run_main
from srdc.errors import NonFiniteLossError, SRDCInputError


@pytest.mark.parametrize("task, expected", [
    ("A->W", ("A", "W")),
    ("A→W", ("A", "W")),
    (" Ar -> Rw ", ("Ar", "Rw")),
    ("digits->digits_photo", ("digits", "digits_photo")),
    ("real-world->clip-art", ("real-world", "clip-art")),
    ("data/a.npz->data/b.npz", ("data/a.npz", "data/b.npz")),
])
def test_parse_task_reads_both_arrows_and_keeps_dashes_in_names(task, expected):
    assert parse_task(task) == expected


@pytest.mark.parametrize("task", ["A-W", "A->", "->W", "AW", ""])
def test_parse_task_refuses_other_forms_with_an_example(task):
    with pytest.raises(SRDCInputError, match=r"write it as SOURCE->TARGET, e\.g\. A->W"):
        parse_task(task)


def test_resolve_device_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_resolve_device_cuda_without_cuda_names_the_alternatives(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(SRDCInputError, match="CUDA is not available; use --device cpu or auto"):
        resolve_device("cuda")


def draws() -> tuple[float, list[float], list[float]]:
    return random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist()


def test_restored_random_states_repeat_python_numpy_and_torch_draws():
    state = capture_rng()
    first = draws()
    assert draws() != first
    restore_rng(state)
    assert draws() == first


def test_a_captured_state_can_be_restored_again_after_more_draws():
    state = capture_rng()
    first = draws()
    restore_rng(state)
    draws()
    restore_rng(state)
    assert draws() == first


def test_run_main_passes_the_entry_status_through():
    assert run_main(lambda: 0) == 0
    assert run_main(lambda: 3) == 3


def raiser(error: Exception):
    def entry() -> int:
        raise error
    return entry


@pytest.mark.parametrize("error, status", [
    (SRDCInputError("unknown dataset 'x'"), 2),
    (NonFiniteLossError("loss is nan at epoch 3"), 1),
])
def test_run_main_prints_one_error_line_and_exits_with_its_status(capsys, error, status):
    assert run_main(raiser(error)) == status
    captured = capsys.readouterr()
    assert captured.err == f"error: {error}\n" and captured.out == ""


def test_run_main_lets_other_exceptions_propagate():
    with pytest.raises(KeyError):
        run_main(raiser(KeyError("bug")))


def test_a_registry_lists_lazy_and_plain_entries_and_refuses_an_unknown_name_naming_its_kind_and_choices():
    registry: Registry[object] = Registry("colour", {"red": "collections:OrderedDict"}, entries={"blue": 1})
    registry["green"] = 2
    assert list(registry) == ["red", "blue", "green"] and registry.loaded("red") is None  # listing imports nothing
    assert registry.check("red") == "red" and registry.loaded("red") is None
    assert registry.lookup("blue") == 1 and registry.lookup("red").__name__ == "OrderedDict"
    message = "^unknown colour 'grey'; choose one of: red, blue, green$"
    for find in (registry.check, registry.lookup):
        with pytest.raises(SRDCInputError, match=message):
            find("grey")
