"""Declarations that several ``studies/*.py`` scripts share, and the factorial study's entry point.

The runner itself is :mod:`srdc.studies`; this module only holds what would otherwise be copied between study
files: the released code's per-task setting for Office-31 tasks into amazon, where the real digits live, and
:func:`factorial_main` (the runner's :func:`srdc.studies.main` with the factorial's tables and effects).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from srdc.data.base import parse_task
from srdc.errors import SRDCInputError
from srdc.factorial import factorial_tables
from srdc.studies import PRINTED_SELECTIONS, Study, describe, run_study

# The released code initialises the centres mu from the target K-means centres alone when the target domain is
# amazon (mu_init="target"), and from the mean of source and target centres otherwise (official_code_facts.md).
AMAZON_TARGET = {"mu_init": "target"}
REPO = Path(__file__).resolve().parents[1]


def office31_task_config(tasks: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``Study.task_config`` of Office-31 ``tasks``: the amazon-target setting for those whose target is A."""
    return {task: AMAZON_TARGET for task in tasks if parse_task(task)[1] == "A"}


def shared_data_root() -> str:
    """Where the real digits are: ``$SRDC_DATA_ROOT``, else ``../shared/data`` beside the repository."""
    return os.environ.get("SRDC_DATA_ROOT") or str(REPO.parent / "shared" / "data")


def factorial_main(study: Study, argv: list[str] | None = None) -> int:
    """Like :func:`srdc.studies.main`, but the tables are the factorial's: one row per cell of the three switches
    (``study.grid``), with the effects under each table (:func:`srdc.factorial.factorial_tables`)."""
    try:
        outcome = run_study(study, argv)
    except SRDCInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    plan = outcome.plan
    tables = "\n".join(factorial_tables(outcome.records, selection, len(plan.seeds), plan.name)
                       for selection in PRINTED_SELECTIONS)
    print(describe(dataclasses.replace(outcome, tables=tables)))
    return outcome.exit_code
