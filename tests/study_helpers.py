"""Helpers shared by the harness tests: load what a script in studies/ declares, and plan it."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from srdc.harness.declarations import Study
from srdc.harness.options import build_parser, launch_from_args
from srdc.harness.plan import Plan, plan_study

REPO = Path(__file__).resolve().parents[1]


def load_declaration(name: str, attribute: str = "STUDY") -> Any:
    """The ``attribute`` (``STUDY``, ``SEARCH``) that ``studies/NAME.py`` declares, without running it."""
    spec = importlib.util.spec_from_file_location(name, REPO / "studies" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, attribute)


def plan_of(study: Study, *argv: str) -> Plan:
    """What the study's script would run for the command line ``argv``."""
    return plan_study(study, launch_from_args(study, build_parser(study).parse_args(list(argv))))
