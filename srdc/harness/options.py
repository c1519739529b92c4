"""Every option of a study or search script, and the one :class:`Launch` they resolve to.

A :class:`Launch` holds every path, URI and resource of a run, resolved once (local paths absolute, the tracking
URI chosen). It is saved as ``srdc_study.json`` in the study's Tune folder before the first trial, so that
``--resume`` needs only ``--storage-path`` (and ``--study-name``/``--smoke-test`` when they were given): the
saved launch comes back whole, and an option given again with another value is an error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
import tempfile
import unicodedata
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from srdc.base import SEARCH_SELECTIONS, ArgumentParser
from srdc.config import default_of, options
from srdc.errors import SRDCInputError
from srdc.harness.declarations import DATA_ROOT_ENV, GRID_KEYS, Search, Study, default_data_root
from srdc.harness.lease import refuse_if_held
from srdc.harness.signatures import KEY_ENV, TRUST_OPTION, sign_files, verify_storage
from srdc.tracking import DEFAULT_EXPERIMENT, check_tracking_uri, resolve_tracking_uri
from srdc.trialfiles import LAUNCH_FILE, STORAGE_SCHEMES, TRIAL_LOG, read_launch_file, write_launch_file

DEFAULT_STORAGE = "ray_results"
MAX_NAME_BYTES = 200  # a study name's longest (a folder name's limit is 255 bytes; phases add "-promoted")
FEATURES = "features"
# options that say which study --resume continues: they may be given again
# (and the Ray cluster: a new head after the old one died has a new address; the dry run's own options; the console)
# (and --trust-storage: a resume's own choice)
LOCATING = ("storage_path", "study_name", "smoke_test", "resume", "address", "dry_run", "plan_gpus", "verbose",
            "dashboard", "trust_storage")
# --set may not touch what the study's own options set
RESERVED = (*GRID_KEYS, "source", "target", "dataset", "epochs", "data_root")


@dataclass(frozen=True)
class SearchOptions:
    """A search's own options (:mod:`srdc.harness.search`)."""

    objective: str = SEARCH_SELECTIONS[0]  # the selection the search optimises (--objective)
    num_samples: int | None = None
    dataset: str | None = None
    features_dir: str | None = None
    promote: int = 0
    rerun_seeds: tuple[int, ...] = ()
    n_startup_trials: int | None = None
    sampler_seed: int = 0
    grace_period: int | None = None
    reduction_factor: int = 2


@dataclass(frozen=True)
class Launch:
    """One study or search run, resolved: what to run (the slices of the declared grid), where, with what."""

    study_name: str
    storage_path: str
    data_root: str
    tracking_uri: str
    experiment: str = DEFAULT_EXPERIMENT
    smoke_test: bool = False
    epochs: int | None = None
    seeds: tuple[int, ...] | None = None
    tasks: tuple[str, ...] | None = None
    variants: tuple[str, ...] | None = None
    overrides: tuple[str, ...] = ()
    gpus_per_trial: float | None = None
    cpus_per_trial: float = 1.0
    max_concurrent: int | None = None
    max_failures: int = 2
    keep_checkpoints: int = 1
    checkpoint_every: int = 1
    address: str | None = None
    dashboard: bool = False
    resume: bool = False
    trust_storage: bool = False
    dry_run: bool = False
    plan_gpus: float | None = None
    verbose: int = 0
    search: SearchOptions | None = None

    @property
    def path(self) -> str:
        """The study's sweep folder: ``STORAGE/NAME`` (local and absolute, or a URI)."""
        return f"{self.storage_path.rstrip('/')}/{self.study_name}"

    def trial_resources(self, cluster_gpus: float) -> dict[str, float]:
        """CPU and GPU per trial on a cluster of ``cluster_gpus`` GPUs: ``--gpus-per-trial``, else 1 when the
        cluster has GPUs, else 0. CPU is always given (``{"gpu": 0.5}`` alone would ask for no CPU)."""
        gpus = self.gpus_per_trial
        if gpus is None:
            gpus = 1.0 if cluster_gpus > 0 else 0.0
        return {"cpu": self.cpus_per_trial, "gpu": gpus}

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Launch:
        values = json.loads(text)
        search = values.pop("search")
        if search is not None:
            search = SearchOptions(**{**search, "rerun_seeds": tuple(search["rerun_seeds"])})
        tuples = {key: tuple(values[key]) for key in ("seeds", "tasks", "variants", "overrides")
                  if values[key] is not None}
        return cls(**{**values, **tuples, "search": search})


# -- the command line -----------------------------------------------------------------------------------------
def build_parser(study: Study, search: Search | None = None) -> argparse.ArgumentParser:
    """The options of every study script; a search script's add its own (and ``--seeds`` are every trial's)."""
    parser = ArgumentParser(prog=Path(sys.argv[0]).name, description=_description(study, search))
    parser.add_argument("--smoke-test", action="store_true",
                        help="the same grid shape on the embedded data, tiny budget (minutes on a CPU)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per trial (default: the study's)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="the seeds: one trial per seed and grid cell (a search: every trial trains each seed) "
                             "(default: the study's)")
    parser.add_argument("--tasks", nargs="+", default=None, help="a subset of the study's tasks")
    parser.add_argument("--variants", nargs="+", default=None, help="a subset of the study's variants")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                        help="a config field for every trial, e.g. --set num_workers=4 --set bf16=true")
    parser.add_argument("--data-root", default=default_data_root(),
                        help=f"where the datasets are (default: ${DATA_ROOT_ENV}, else {default_of('data_root')}; "
                             "now %(default)s)")
    parser.add_argument("--storage-path", default=DEFAULT_STORAGE,
                        help="Tune's results and checkpoints: a local folder, a shared NFS path, s3:// or gs:// "
                             f"(default: ./{DEFAULT_STORAGE})")
    parser.add_argument("--study-name", default=None,
                        help=f"the name of the study's sweep folder under --storage-path and of its MLflow study "
                             f"(default: {study.name}, with --smoke-test {study.name}-smoke)")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)")
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help=f"MLflow experiment ({DEFAULT_EXPERIMENT})")
    parser.add_argument("--gpus-per-trial", type=float, default=None,
                        help="GPUs per trial, fractions allowed (default: 1 when the Ray cluster has GPUs, else 0)")
    parser.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per trial (default: 1)")
    parser.add_argument("--max-concurrent", type=int, default=None,
                        help="trials at once (default: as many as the resources allow)")
    parser.add_argument("--max-failures", type=int, default=2,
                        help="retries of a crashed trial, each from its last checkpoint (default: 2)")
    parser.add_argument("--keep-checkpoints", type=int, default=1, metavar="K",
                        help="checkpoints kept per trial in the storage, the latest K (default: 1)")
    parser.add_argument("--checkpoint-every", type=int, default=1, metavar="K",
                        help="checkpoint a trial every K epochs (and at its last); a crashed trial then trains "
                             "again, exactly as before, the epochs after its last checkpoint (default: 1)")
    parser.add_argument("--address", default=None,
                        help="the Ray cluster to run on, e.g. HEAD_IP:6379 (default: $RAY_ADDRESS, else the "
                             "cluster `ray start` made on this machine, else a local instance for this study)")
    parser.add_argument("--dashboard", action="store_true",
                        help="start Ray's dashboard with the local Ray instance this study starts (default: none, "
                             "a faster start; a cluster of `ray start` or --address keeps its own)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the trials, the resources per trial, how many run at once and the estimated "
                             "wall time and GPU-hours; run nothing")
    parser.add_argument("--plan-gpus", type=float, default=None, metavar="N",
                        help="with --dry-run: plan for a cluster of N GPUs instead of the one Ray sees")
    parser.add_argument("--resume", action="store_true",
                        help="continue the interrupted study STORAGE/NAME with its original settings: finished "
                             "trials are kept, unfinished and errored ones continue from their last checkpoint")
    parser.add_argument(TRUST_OPTION, action="store_true",
                        help=f"with --resume: read the study's files without verifying their signatures (by "
                             f"default Tune's state and the launch file must be signed with the key ${KEY_ENV}, "
                             f"else ~/.config/srdc/storage.key; see docs/cluster.md)")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="the console: by default one line per trial event (started, finished with its "
                             "accuracies, stopped early, diverged, retried, failed) and a summary line every 30 s, "
                             f"each trial's output in its folder's {TRIAL_LOG}; -v adds Tune's status table of every "
                             "trial every 30 s and the INFO lines of Ray, MLflow and Optuna, -vv each trial's "
                             "results as they come and its output, -vvv with every reported value (Tune's "
                             "verbosity 1-3)")
    if search is not None:
        add_search_options(parser, search)
    return parser


def _description(study: Study, search: Search | None) -> str:
    if search is not None:
        return (f"Optuna search {study.name}: {', '.join(study.grid)} on {study.dataset} {', '.join(study.tasks)} "
                f"(objective: the mean over tasks and seeds {', '.join(map(str, study.seeds))}). {study.description}")
    paper = f" (paper {study.paper_table})" if study.paper_table else ""
    return (f"Study {study.name}{paper}: {study.dataset} {', '.join(study.tasks)} x {', '.join(study.variants)} x "
            f"seeds {', '.join(map(str, study.seeds))}. {study.description}")


def add_search_options(parser: argparse.ArgumentParser, search: Search) -> None:
    """The options of :mod:`srdc.harness.search`."""
    dataset = search.study.dataset
    parser.add_argument("--objective", choices=SEARCH_SELECTIONS, default=SEARCH_SELECTIONS[0],
                        help="labelfree (default): the best label-free validator value (acc_labelfree's); "
                             "oracle: the best target accuracy (target labels, the paper's protocol)")
    parser.add_argument("--num-samples", type=int, default=None,
                        help=f"trials (default {search.num_samples}; with --smoke-test {search.smoke_samples})")
    parser.add_argument("--dataset", choices=(dataset, FEATURES), default=None,
                        help=f"{FEATURES}: search on cached backbone features (the head trains; minutes), "
                             f"extracted once into --features-dir (default: {dataset}'s images)")
    parser.add_argument("--features-dir", default=None,
                        help="the DOMAIN.npz feature files (default: STORAGE/features/DATASET); missing ones "
                             "are extracted with the study's backbone")
    parser.add_argument("--promote", type=int, default=0, metavar="K",
                        help="run the K best configs again as full fine-tuning trials (with --dataset features)")
    parser.add_argument("--rerun-seeds", type=int, nargs="+", default=list(search.rerun_seeds),
                        help="the fresh seeds the winning config is re-run on (default: %(default)s)")
    parser.add_argument("--n-startup-trials", type=int, default=None,
                        help="random trials before TPE (default: a quarter of --num-samples, 3 to 10)")
    parser.add_argument("--sampler-seed", type=int, default=0, help="the TPE sampler's seed (default 0)")
    parser.add_argument("--grace-period", type=int, default=None,
                        help="ASHA: epochs before a trial may be stopped (default: a tenth of the epochs, at least 2: "
                             "the first epoch trains with lambda = 0 whatever the trial's lambda schedule, so its "
                             "result cannot rank the lambdas searched)")
    parser.add_argument("--reduction-factor", type=int, default=2,
                        help="ASHA: 1/factor of the trials go on at each rung (default 2)")
    parser.set_defaults(max_concurrent=search.max_concurrent)
    parser.epilog = (f"Here --max-concurrent defaults to {search.max_concurrent}: the searcher's concurrency limit "
                     f"(TPE proposes from finished trials), and --seeds are the seeds of every trial.")


def parse_overrides(items: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``["lr=0.02", "bf16=true"]`` -> ``{"lr": 0.02, "bf16": True}``, typed like ``srdc-train``'s options."""
    from srdc.cli import build_parser as train_parser

    names = set(options())
    parser = train_parser()
    values: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in names:
            raise SRDCInputError(f"--set {item!r}: expected FIELD=VALUE with FIELD a config field")
        if key in RESERVED:
            raise SRDCInputError(f"--set {key}: use --tasks/--variants/--seeds/--epochs/--data-root or the study")
        values[key] = getattr(parser.parse_args([f"--{key}", text]), key)
        if key == "workers" and values[key] != 1:
            raise SRDCInputError(f"--set workers={values[key]}: a study's trial is one worker in this version; "
                                 f"srdc-train --workers N trains one run on N")
    return values


# -- resolving: the Launch ------------------------------------------------------------------------------------
def absolute(path: str) -> str:
    """A local path made absolute (trials run in their own working directory); URIs unchanged."""
    return path if "://" in path else str(Path(path).expanduser().resolve())


def study_name(study: Study, args: argparse.Namespace) -> str:
    """The sweep's and MLflow study's name: ``--study-name`` (checked: :func:`check_study_name`), else the study's
    (``-smoke`` added)."""
    if args.study_name is None:
        return f"{study.name}-smoke" if args.smoke_test else study.name
    return check_study_name(args.study_name)


def check_study_name(name: str) -> str:
    """``name`` when it is safe as one folder name everywhere (local, NFS, ``s3://``, ``gs://``) and in a printed
    command: not empty, ``.`` or ``..``, no ``/`` or ``\\``, no newline or other control character, no blank at
    either end, at most :data:`MAX_NAME_BYTES` bytes in UTF-8; unicode letters, blanks and punctuation are fine."""
    problem = None
    if name in ("", ".", ".."):
        problem = "is not a folder name"
    elif "/" in name or "\\" in name:
        problem = "contains a path separator"
    elif any(unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") for char in name):
        problem = "contains a newline or another control character"
    elif name != name.strip():
        problem = "starts or ends with a blank"
    elif len(name.encode()) > MAX_NAME_BYTES:
        problem = f"is longer than {MAX_NAME_BYTES} bytes"
    if problem is not None:
        raise SRDCInputError(f"--study-name {name!r} {problem}; choose a plain folder name such as "
                             f"my-study_2 (letters, digits, '-', '_', '.', blanks inside)")
    return name


def check_ranges(args: argparse.Namespace) -> None:
    """Counts and resources in range (one line naming the option otherwise)."""
    limits = {"epochs": 1, "max_concurrent": 1, "max_failures": 0, "keep_checkpoints": 1, "checkpoint_every": 1,
              "num_samples": 1,
              "promote": 0, "grace_period": 1, "reduction_factor": 2, "n_startup_trials": 0}
    for name, low in limits.items():
        value = getattr(args, name, None)
        if value is not None and value < low:
            raise SRDCInputError(f"--{name.replace('_', '-')} {value}: must be >= {low}")
    if args.cpus_per_trial <= 0 or (args.gpus_per_trial is not None and args.gpus_per_trial < 0):
        raise SRDCInputError("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0")
    if args.plan_gpus is not None and (args.plan_gpus <= 0 or not args.dry_run):
        raise SRDCInputError(f"--plan-gpus {args.plan_gpus:g}: plans a --dry-run for a cluster of N > 0 GPUs; add "
                             f"--dry-run (or drop --plan-gpus)")


def launch_from_args(study: Study, args: argparse.Namespace) -> Launch:
    """The launch ``args`` ask for, locations resolved."""
    check_ranges(args)
    search = None
    if hasattr(args, "objective"):
        search = SearchOptions(**{f.name: getattr(args, f.name) for f in fields(SearchOptions)
                                  if f.name != "rerun_seeds"}, rerun_seeds=tuple(args.rerun_seeds))
    optional_tuples = {key: tuple(getattr(args, key)) if getattr(args, key) is not None else None
                       for key in ("seeds", "tasks", "variants")}
    return Launch(
        study_name=study_name(study, args), storage_path=absolute(args.storage_path),
        data_root=absolute(args.data_root), tracking_uri=resolve_tracking_uri(args.tracking_uri),
        experiment=args.experiment, smoke_test=args.smoke_test, epochs=args.epochs, **optional_tuples,
        overrides=tuple(args.overrides), gpus_per_trial=args.gpus_per_trial, cpus_per_trial=args.cpus_per_trial,
        max_concurrent=args.max_concurrent, max_failures=args.max_failures, keep_checkpoints=args.keep_checkpoints,
        checkpoint_every=args.checkpoint_every, address=args.address or os.environ.get("RAY_ADDRESS") or None,
        dashboard=args.dashboard, resume=args.resume, trust_storage=args.trust_storage, dry_run=args.dry_run,
        plan_gpus=args.plan_gpus, verbose=args.verbose, search=search)


def resolve_launch(study: Study, argv: list[str] | None, search: Search | None = None) -> Launch:
    """The command line ``argv`` of ``study`` (or of ``search``) as a :class:`Launch`; with ``--resume``, the saved
    launch of the study it names (an option given again must not change it). A ``--dry-run`` writes nothing: the
    storage path is only read."""
    parser = build_parser(study, search)
    args = parser.parse_args(argv)
    launch = launch_from_args(study, args)
    if not launch.dry_run:
        check_storage(launch.storage_path)
    if launch.trust_storage and not launch.resume:
        raise SRDCInputError(f"{TRUST_OPTION} goes with --resume; drop it")
    if launch.resume and not launch.dry_run:
        refuse_if_held(launch.path)
        if not launch.trust_storage:
            verify_storage(launch.path)
    saved = read_launch(launch.path)
    if launch.resume and saved is None:
        raise SRDCInputError(f"--resume: no study {launch.study_name} in {launch.path}; drop --resume to start it")
    if saved is not None and not launch.resume:
        raise SRDCInputError(f"{launch.path} already holds study {launch.study_name}; pass --resume to continue "
                             f"it, or --study-name")
    if not launch.resume:
        return launch
    changed = changed_options(args, parser.parse_args([]), launch, saved)
    if changed:
        raise SRDCInputError(f"--resume continues {launch.path} with its original settings; drop "
                             + ", ".join(f"--{key.replace('_', '-')}" for key in changed))
    return dataclasses.replace(saved, **{key: getattr(launch, key) for key in LOCATING})


def changed_options(args: argparse.Namespace, defaults: argparse.Namespace, now: Launch, saved: Launch) -> list[str]:
    """The options given on the command line (not left at their default) whose value differs from the saved one."""
    now_values = {**dataclasses.asdict(now), **(dataclasses.asdict(now.search) if now.search else {})}
    saved_values = {**dataclasses.asdict(saved), **(dataclasses.asdict(saved.search) if saved.search else {})}
    given = [key for key, value in vars(args).items() if key not in LOCATING and value != getattr(defaults, key)]
    return sorted(key for key in given if now_values.get(key) != saved_values.get(key))


def check_storage(path: str) -> None:
    """``--storage-path`` must be a folder this process can write (created if missing) or a URI of a filesystem
    Tune writes to; anything else is one line, before Ray or any trial starts."""
    if "://" in path:
        scheme = path.split("://", 1)[0].lower()
        if scheme not in STORAGE_SCHEMES:
            raise SRDCInputError(f"--storage-path {path}: unknown scheme {scheme}://; use a local or NFS folder, "
                                 f"s3://BUCKET/PREFIX or gs://BUCKET/PREFIX")
        return
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".srdc-write-check-"):
            pass
    except OSError as error:
        raise SRDCInputError(f"--storage-path {path}: cannot write there ({error.strerror or error}); choose a "
                             f"writable folder") from None


def preflight(launch: Launch) -> list[str]:
    """Check the tracking store before anything starts (input errors raise; the storage path was checked when
    the launch was resolved); the warnings to show."""
    warning = check_tracking_uri(launch.tracking_uri)
    return [warning] if warning else []


def resume_command(launch: Launch) -> str:
    """The command line that continues the study of ``launch``, shell-quoted: safe to paste whatever the study
    name, storage path or script path hold (blanks, ``;``, quotes, ``$``)."""
    return shlex.join([sys.executable, sys.argv[0], "--resume", "--storage-path", launch.storage_path,
                       "--study-name", launch.study_name])


def save_launch(launch: Launch) -> None:
    """Write ``launch`` into its sweep folder (local, NFS, ``s3://``, ``gs://``), signed
    (:mod:`srdc.harness.signatures`)."""
    text = launch.to_json()
    write_launch_file(launch.path, text)
    sign_files(launch.path, {LAUNCH_FILE: text.encode()})


def read_launch(path: str) -> Launch | None:
    """The launch saved in the sweep folder ``path``; ``None`` when there is none."""
    text = read_launch_file(path)
    if text is None:
        return None
    try:
        return Launch.from_json(text)
    except (ValueError, TypeError, KeyError) as error:
        raise SRDCInputError(f"{path}/{LAUNCH_FILE} is not a launch file of this harness ({error}); choose another "
                             f"--study-name or --storage-path") from None
