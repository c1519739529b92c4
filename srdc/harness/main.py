"""The one entry point of every ``studies/*.py`` script: ``sys.exit(main(STUDY))`` (or ``main(SEARCH)``).

What runs a study (Ray, torch, MLflow) is imported once the command line is read, so that ``--help`` and bad
options cost no heavy import."""

from __future__ import annotations

import sys

from srdc.base import EXIT_RUN_ERROR, disk_full, disk_full_line, run_main, sigterm_interrupts
from srdc.harness.declarations import Search, Study
from srdc.harness.options import Launch, read_launch, resolve_launch, resume_command


def interrupted_early(launch: Launch) -> str:
    """What to do after an interruption outside Tune's loop (while checking data, starting Ray, ...)."""
    if read_launch(launch.path) is None:
        return "interrupted before the study started: nothing was run; run the same command again"
    return f"interrupted: continue it with: {resume_command(launch)}"


def main(declaration: Study | Search, argv: list[str] | None = None) -> int:
    """Run the declared study or search as the command line ``argv`` asks, print its tables and where its runs
    are; the exit status (bad input: one line and 2; interrupted, by Ctrl-C or SIGTERM: 130 with the ``--resume``
    command; a full disk: one line, 1, with it too)."""

    def run() -> int:
        search = declaration if isinstance(declaration, Search) else None
        study = search.study if search is not None else declaration
        launch = resolve_launch(study, argv, search)
        from srdc.harness.dryrun import dry_run
        from srdc.harness.outcome import EXIT_INTERRUPTED, run_study
        from srdc.harness.search import run_search

        if launch.dry_run:
            print(dry_run(declaration, launch).describe(), end="")
            return 0
        try:
            with sigterm_interrupts():  # SIGTERM, also while Ray starts or the tables are written, is Ctrl-C
                outcome = run_search(search, launch) if search is not None else run_study(study, launch)
        except KeyboardInterrupt:
            print(interrupted_early(launch), file=sys.stderr)
            return EXIT_INTERRUPTED
        except Exception as error:  # a full disk under --storage-path: one line, and how to continue
            full = disk_full(error)
            if full is None:
                raise
            then = "run the same command again" if read_launch(launch.path) is None \
                else f"continue it with: {resume_command(launch)}"
            print(disk_full_line(full, then), file=sys.stderr)
            return EXIT_RUN_ERROR
        print(outcome.describe())
        return outcome.exit_code

    return run_main(run)
