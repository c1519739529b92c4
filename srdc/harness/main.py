"""The one entry point of every ``studies/*.py`` script: ``sys.exit(main(STUDY))`` (or ``main(SEARCH)``)."""

from __future__ import annotations

from srdc.base import run_main
from srdc.harness.declarations import Search, Study
from srdc.harness.options import resolve_launch
from srdc.harness.outcome import run_study
from srdc.harness.search import run_search


def main(declaration: Study | Search, argv: list[str] | None = None) -> int:
    """Run the declared study or search as the command line ``argv`` asks, print its tables and where its runs
    are; the exit status (bad input: one line and 2; interrupted: 130 with the ``--resume`` command)."""

    def run() -> int:
        if isinstance(declaration, Search):
            outcome = run_search(declaration, resolve_launch(declaration.study, argv, declaration))
        else:
            outcome = run_study(declaration, resolve_launch(declaration, argv))
        print(outcome.describe())
        return outcome.exit_code

    return run_main(run)
