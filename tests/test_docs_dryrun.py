"""docs/cluster.md's captured ``--dry-run`` outputs are what the commands print now: each ``<details>`` block's
command is run in this process (a dry run runs and writes nothing) and compared with the captured text, the
decimal figures aside (they follow the cost table's rows, which measuring a GPU replaces)."""

import re
import shlex
from pathlib import Path

import pytest
from study_helpers import load_declaration

from srdc.harness import dryrun
from srdc.harness.main import main

DOC = Path(__file__).resolve().parents[1] / "docs" / "cluster.md"
CAPTURED = re.compile(r"<details><summary><code>python studies/(\w+)\.py ([^<]*)</code></summary>\n\n```text\n"
                      r"(.*?)```\n", re.S)
DECIMAL = re.compile(r"\d+\.\d+")


def captured() -> list[tuple[str, list[str], str]]:
    """(study, argv, output) of every dry run docs/cluster.md shows."""
    return [(study, shlex.split(args), text) for study, args, text in CAPTURED.findall(DOC.read_text())]


def figures_aside(text: str) -> str:
    return DECIMAL.sub("#", text)


def test_the_doc_captures_the_dry_runs_of_tables_1_to_5():
    studies = ("ablation_office31", "inductive_office31", "benchmark_office31", "benchmark_imageclef",
               "benchmark_officehome")
    assert [(study, argv) for study, argv, _ in captured()] == [(study, ["--dry-run", "--plan-gpus", "8"])
                                                                for study in studies]


@pytest.mark.parametrize(("study", "argv", "text"), captured(), ids=lambda value: value if isinstance(value, str)
                         and value.isidentifier() else None)
def test_a_captured_dry_run_is_what_the_command_prints_now(study, argv, text, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(dryrun, "local_gpu_name", lambda: None)  # as captured: no GPU where the doc was written
    assert main(load_declaration(study), argv) == 0
    assert figures_aside(capsys.readouterr().out) == figures_aside(text)


def test_the_comparison_sees_a_changed_line_but_not_a_changed_figure():
    text = "  total: 60 trials, 16.5 GPU-hours, wall time 2.2 h with 8 at once\n"
    assert figures_aside(text) == figures_aside(text.replace("16.5", "17.0"))
    assert figures_aside(text) != figures_aside(text.replace("60 trials", "61 trials"))
