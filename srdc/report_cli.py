"""``srdc-report``: a study's results table from the tracking store, beside the paper's numbers.

Reads the study's trial records through :mod:`srdc.tracking` (``--sync`` first backfills the store from Tune's
results on disk, and afterwards publishes the study's results on its parent run), then aggregates them
(:mod:`srdc.tables`) and renders them (:mod:`srdc.report`): Markdown, CSV or LaTeX of one model selection
(``--selection``), or a self-contained HTML page to share without a server, the study's own ``report.html``: every
selection's tables and the study's figures (:mod:`srdc.figures.study`, drawn from the store's records and metric
histories).

    python -m srdc.report_cli --study NAME      # the same as srdc-report, without an activated environment
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from srdc.base import INDUCTIVE_SELECTIONS, LABELFREE_BY, ORACLE, SELECTIONS, ArgumentParser, TrialStatus, run_main
from srdc.errors import SRDCInputError
from srdc.figures.study import study_figures
from srdc.report import FORMATS, RESULT_FILES, planned_seeds, render, stand_ins_param
from srdc.tables import grouped_tables, with_stand_ins
from srdc.tracking import (
    DEFAULT_EXPERIMENT,
    Tracker,
    TrackingServerFailed,
    TrackingUnavailable,
    limit_http_retries,
    open_tracker,
    publish_study,
    resolve_tracking_uri,
    store_results,
    sync_study,
)
from srdc.tracking.results import grid_fields
from srdc.validators import VALIDATORS


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``srdc-report``."""
    parser = ArgumentParser(
        prog="srdc-report", description="A study's results table from MLflow (mean±std over seeds) and the paper's.")
    parser.add_argument("--study", required=True, nargs="+", metavar="STUDY",
                        help="the study's name (tag srdc.study); with --validators several studies, judged together "
                             "and per study")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)")
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT,
                        help=f"the MLflow experiment holding the study's runs (default: {DEFAULT_EXPERIMENT})")
    parser.add_argument("--format", choices=FORMATS, default="md",
                        help="Markdown, CSV (one line per cell), LaTeX, or one self-contained HTML page with "
                             "every selection's tables and the study's figures (default: md)")
    parser.add_argument("--selection", choices=(*SELECTIONS, *INDUCTIVE_SELECTIONS,
                                                *(f"{LABELFREE_BY}{name}" for name in VALIDATORS)),
                        default=ORACLE, metavar="SELECTION",
                        help="which epoch of each run: chosen with target labels (oracle, the paper's protocol), "
                             "without them by the study's validator (labelfree) or by another one (labelfree_NAME: "
                             f"{', '.join(VALIDATORS)}), or the final one (last); an inductive study's also by the "
                             "best training-half or test-half accuracy (oracle_train_half, oracle_test_half: the "
                             f"released code's other two) (default: {ORACLE}; the HTML page holds the oracle, "
                             "labelfree and last tables, and an inductive study's those two)")
    parser.add_argument("--rows", default="variant", help="config field for the rows (default: variant)")
    parser.add_argument("--validators", action="store_true",
                        help="instead of the results: for every label-free validator, the accuracy of the epoch "
                             "and of the configuration it picks, the gap to the oracle's picks and its rank "
                             "correlation with target accuracy (reads every run's per-epoch metrics)")
    parser.add_argument("--sync", action="store_true",
                        help="first backfill MLflow from the Tune results in --storage-path, then publish the "
                             "study's tables (every selection and format), metrics and description on its parent "
                             "run")
    parser.add_argument("--storage-path", default=None,
                        help="the study's sweep folder, Tune's results (for --sync): a folder, s3://... or gs://...")
    return parser


def check_store_exists(uri: str) -> None:
    """A SQLite store must exist already: reading one must not create an empty one."""
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise SRDCInputError(f"no MLflow store at {uri}; run the report where the study ran, or pass --tracking-uri")


def load_study(tracker: Tracker, study: str, where: str) -> tuple[list[dict[str, Any]], int | None, dict[str, str]]:
    """The study's records (one per trial; a smoke test's tasks named after those they stand in for,
    :func:`srdc.tables.with_stand_ins`), its planned seed count (the parent's ``seeds`` param) and its parent's
    params."""
    params = tracker.study_params(study)
    records = with_stand_ins(tracker.study_trials(study), stand_ins_param(params.get("stand_ins")))
    if not records and not params and tracker.find_study(study) is None:
        known = ", ".join(tracker.known_studies()) or "none"
        raise SRDCInputError(f"no study {study!r} in {where}; known studies: {known} (or pass --experiment)")
    return records, planned_seeds(params.get("seeds")), params


PROGRESS_EVERY_S = 10.0


class ProgressLine:
    """``what: DONE/TOTAL`` on stderr at most every :data:`PROGRESS_EVERY_S` seconds, and at the last one (a backfill
    that draws a study's deferred figures takes about a second a trial)."""

    def __init__(self, what: str) -> None:
        self.what, self.said = what, time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        if done == total or time.monotonic() - self.said >= PROGRESS_EVERY_S:
            print(f"{self.what}: {done}/{total}", file=sys.stderr, flush=True)
            self.said = time.monotonic()


def sync(args: argparse.Namespace, uri: str) -> None:
    """Backfill the store from the study's sweep folder; a line on stderr says what it did."""
    if args.storage_path is None:
        raise SRDCInputError("--sync needs --storage-path: the study's sweep folder")
    done = sync_study(args.storage_path, args.study[0], uri, args.experiment,
                      progress=ProgressLine("sync: trial folders"))
    print(f"synced {done.trials} trial(s) into {uri}: {done.runs_created} run(s) created, "
          f"{done.epochs_logged} epoch(s) logged", file=sys.stderr)


def report(args: argparse.Namespace) -> str:
    """Sync if asked, then the rendered tables (or a line saying that nothing has finished yet)."""
    if len(args.study) > 1 and (not args.validators or args.sync):
        raise SRDCInputError("several --study names are for --validators (without --sync): pass one study")
    uri = resolve_tracking_uri(args.tracking_uri)
    if args.sync:
        sync(args, uri)
    else:
        check_store_exists(uri)
    tracker = open_tracker(uri, args.experiment)
    where = f"experiment {args.experiment!r} at {uri}"
    if args.validators:
        return validators_table(tracker, [{**record, "study": study} for study in args.study
                                          for record in load_study(tracker, study, where)[0]], ", ".join(args.study),
                                several=len(args.study) > 1)
    study = args.study[0]
    records, planned, params = load_study(tracker, study, where)
    if records and args.rows not in records[0]:
        raise SRDCInputError(f"--rows {args.rows!r} is not a config field of study {study!r}")
    # one set of tables per value of the grid fields besides the rows (the factorial study's switches...)
    tables = grouped_tables(records, args.selection, args.rows, planned, study, grid_fields(params, args.rows))
    if args.sync and publish_study(tracker, study, args.rows):
        print(f"published the results of study {study} on its parent run", file=sys.stderr)
    if not any(table.cells for table in tables):
        return f"study {study}: no finished trials yet ({len(records)} started)\n"
    if args.format == "html":
        return html_report(tracker, study, args.rows)
    return render(tables, args.format, f"Study {study}")


def html_report(tracker: Tracker, study: str, rows: str) -> str:
    """The study's HTML page as the study writes it (``report.html``): every selection's tables, then the study's
    figures (those its parent run holds, drawn again from the store) embedded."""
    results = store_results(tracker, study, rows)
    with tempfile.TemporaryDirectory(prefix="srdc-figures-") as folder:
        return results.files(study_figures(results, Path(folder)))[RESULT_FILES["html"]]


def validators_table(tracker: Tracker, records: list[dict[str, Any]], study: str, several: bool = False) -> str:
    """The validator comparison (:mod:`srdc.validator_report`) over the finished runs of ``study`` (of several
    studies, ``several``: then also per study), their histories read from the store."""
    from srdc.validator_report import ACCURACY, validator_report

    keys = [ACCURACY, *(validator.metric for validator in VALIDATORS.values())]
    finished = [{**record, "history": tracker.epoch_history(record["run_id"], keys)} for record in records
                if record.get("status") == TrialStatus.FINISHED]
    if not finished:
        return f"study {study}: no finished trials yet ({len(records)} started)\n"
    return validator_report(finished, study, ("variant", "task", *(("study",) if several else ())))


def main(argv: list[str] | None = None) -> int:
    """``srdc-report``: the table on stdout; bad input or an unreachable store is one line on stderr, exit 2."""
    args = build_parser().parse_args(argv)
    limit_http_retries()

    def entry() -> int:
        try:
            sys.stdout.write(report(args))
        except TrackingServerFailed as error:
            raise SRDCInputError(f"MLflow at {resolve_tracking_uri(args.tracking_uri)} is up but failed inside "
                                 f"({error}); run the command again, and if it fails again read the server's "
                                 "output") from error
        except TrackingUnavailable as error:
            raise SRDCInputError(f"cannot read MLflow at {resolve_tracking_uri(args.tracking_uri)} ({error}); "
                                 f"start the server (mlflow_server/start.sh) or pass --tracking-uri") from error
        return 0

    return run_main(entry)


if __name__ == "__main__":
    sys.exit(main())
