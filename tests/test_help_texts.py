"""Every option of every entry point says what it is in ``--help``: srdc-train (every config field), srdc-data (each
subcommand), srdc-report, and the options every study and search script shares."""

from __future__ import annotations

import argparse
import re

import pytest
from study_helpers import load_declaration

from srdc import cli, config, report_cli
from srdc.data import cli as data_cli
from srdc.harness.options import build_parser as study_parser

DEFAULT = re.compile(r"\(default:[^)]*\)")


def options(parser: argparse.ArgumentParser, where: str) -> list[tuple[str, argparse.Action]]:
    """Every option and positional argument of ``parser`` and of its subcommands, named ``where SUBCOMMAND``."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            found += [(f"{where} {name}", choice) for name, choice in zip(action.choices, action._choices_actions,
                                                                           strict=True)]
            for name, subparser in action.choices.items():
                found += options(subparser, f"{where} {name}")
            continue
        found.append((f"{where} {'/'.join(action.option_strings) or action.dest}", action))
    return found


def undescribed(parser: argparse.ArgumentParser, where: str) -> list[str]:
    """The options whose help is empty, hidden, or only their default."""
    return [name for name, action in options(parser, where)
            if not action.help or action.help == argparse.SUPPRESS or not DEFAULT.sub("", action.help).strip(" .")]


PARSERS = {
    "srdc-train": cli.build_parser,
    "srdc-data": data_cli.build_parser,
    "srdc-report": report_cli.build_parser,
    "study": lambda: study_parser(load_declaration("ablation_office31")),
    "search": lambda: study_parser(load_declaration("search_lambda_lr", "SEARCH").study,
                                   load_declaration("search_lambda_lr", "SEARCH")),
}


@pytest.mark.parametrize("entry_point", PARSERS)
def test_every_option_has_a_description(entry_point):
    parser = PARSERS[entry_point]()
    assert len(options(parser, entry_point)) >= 5
    assert undescribed(parser, entry_point) == []


def test_every_config_field_has_its_own_help_text():
    assert sorted(name for name, declared in config.options().items() if not declared.help.strip()) == []


def test_srdc_train_lists_every_config_field_under_its_groups_title():
    parser = cli.build_parser()
    titled = {group.title: {action.dest for action in group._group_actions} for group in parser._action_groups}
    for name, declared in config.options().items():
        assert name in titled[config.GROUPS[declared.group]], name
    assert list(config.GROUPS.values()) == [group.title for group in parser._action_groups][-len(config.GROUPS):]


def test_a_help_that_is_only_its_default_counts_as_missing():
    parser = argparse.ArgumentParser()
    parser.add_argument("--a", default=1, help="(default: 1)")
    parser.add_argument("--b", default=1, help="what b is (default: 1)")
    parser.add_argument("c")
    assert undescribed(parser, "x") == ["x --a", "x c"]
