"""Options and the launch: the one resolved Launch, the launch file that --resume reads, bad input as one line."""

import dataclasses

import pytest
from study_helpers import load_declaration

from srdc.errors import SRDCInputError
from srdc.harness.declarations import Study
from srdc.harness.main import main
from srdc.harness.options import Launch, read_launch, resolve_launch, resume_command, save_launch

ABLATION = load_declaration("ablation_office31")


def test_resume_takes_the_saved_launch_and_refuses_other_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    storage = ["--storage-path", "ray"]
    launch = resolve_launch(ABLATION, ["--smoke-test", "--epochs", "3", "--data-root", "data", "--tracking-uri",
                                       "sqlite:///x.db", "--set", "lr=0.02", *storage])
    assert (launch.path, launch.data_root) == (f"{tmp_path}/ray/ablation_office31-smoke", str(tmp_path / "data"))
    save_launch(launch)
    assert read_launch(launch.path) == launch
    with pytest.raises(SRDCInputError, match="already holds study ablation_office31-smoke; pass --resume"):
        resolve_launch(ABLATION, ["--smoke-test", *storage])
    monkeypatch.chdir(tmp_path.parent)  # resumed from elsewhere: the saved absolute locations hold
    resumed = resolve_launch(ABLATION, ["--smoke-test", "--resume", "--storage-path", str(tmp_path / "ray")])
    assert resumed == dataclasses.replace(launch, resume=True)
    with pytest.raises(SRDCInputError, match="drop --epochs, --variants"):
        resolve_launch(ABLATION, ["--smoke-test", "--resume", "--storage-path", str(tmp_path / "ray"), "--epochs",
                                  "4", "--variants", "srdc"])


def test_a_launch_survives_its_file_with_search_options():
    from srdc.harness.options import SearchOptions

    launch = Launch(study_name="s", storage_path="/r", data_root="/d", tracking_uri="sqlite:///m.db", seeds=(0, 1),
                    tasks=("A->W",), overrides=("lr=0.1",), search=SearchOptions(rerun_seeds=(100,), promote=2))
    assert Launch.from_json(launch.to_json()) == launch


@pytest.mark.parametrize("declaration, message", [
    ({"variants": ("srdc", "mcd")}, "unknown variant"),
    ({"grid": {"lamda": [1]}}, "unknown config field"),
    ({"grid": {"seed": [1, 2]}}, "study's own dimensions"),
    ({"grid": {"lr": [0.1]}, "config": {"lr": 0.01}}, "both a grid dimension and fixed"),
    ({"task_config": {"W->D": {"mu_init": "target"}}}, "not in tasks"),
])
def test_a_wrong_declaration_is_one_clear_error(declaration, message):
    with pytest.raises(SRDCInputError, match=message):
        Study(**{"name": "bad", "dataset": "office31", "tasks": ("A->W",), **declaration})


@pytest.mark.parametrize("argv, message", [
    (["--smoke-test", "--tasks", "A->C"], "not in the study's tasks"),
    (["--smoke-test", "--set", "lamda=1"], "FIELD a config field"),
    (["--smoke-test", "--set", "variant=srdc"], "use --tasks/--variants"),
    (["--smoke-test", "--set", "workers=2"], "a study's trial is one worker"),
    (["--smoke-test", "--resume"], "no study ablation_office31-smoke"),
    ([], "srdc-data download office31"),
])
def test_bad_input_exits_2_with_one_message(argv, message, tmp_path, capsys):
    assert main(ABLATION, [*argv, "--storage-path", str(tmp_path), "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1




@pytest.mark.parametrize("name", ["d4 x;touch M", "étude-δ 2", "it's $HOME `id`", "-dash"])
def test_the_resume_command_is_shell_quoted_so_pasting_it_runs_nothing_else(name, tmp_path, monkeypatch):
    import shlex
    import sys

    monkeypatch.setattr(sys, "argv", [str(tmp_path / "my studies" / "ablation;rm.py")])
    launch = Launch(study_name=name, storage_path=str(tmp_path / "a storage; touch M"), data_root="/d",
                    tracking_uri="sqlite:///m.db")
    words = shlex.split(resume_command(launch))
    assert words == [sys.executable, sys.argv[0], "--resume", "--storage-path", launch.storage_path,
                     "--study-name", name]


@pytest.mark.parametrize("name, problem", [
    ("../escape", "contains a path separator"),
    ("a/b", "contains a path separator"),
    ("a\\b", "contains a path separator"),
    ("..", "is not a folder name"),
    (".", "is not a folder name"),
    ("", "is not a folder name"),
    ("two\nlines", "control character"),
    ("bell\x07", "control character"),
    ("rtl\u202eoverride", "control character"),
    (" padded", "starts or ends with a blank"),
    ("x" * 201, "longer than 200 bytes"),
])
def test_an_unsafe_study_name_is_refused_in_one_line_before_anything_is_written(name, problem, tmp_path, capsys):
    storage = tmp_path / "ray"
    code = main(ABLATION, ["--smoke-test", "--study-name", name, "--storage-path", str(storage)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --study-name ") and problem in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not storage.exists() and not (tmp_path / "escape").exists()


@pytest.mark.parametrize("name", ["étude δ", "d4 x;touch M", "研究-1", "a.b_c-d"])
def test_a_unicode_or_punctuated_study_name_is_one_folder_under_the_storage(name, tmp_path):
    launch = resolve_launch(ABLATION, ["--smoke-test", "--study-name", name, "--storage-path", str(tmp_path)])
    save_launch(launch)
    assert [path.name for path in tmp_path.iterdir() if path.is_dir()] == [name]
    assert read_launch(launch.path) == launch
