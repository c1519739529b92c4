"""The trial folder and the storage: every file name a trial writes or the driver reads, their reads and writes, the
one fetch of a remote folder's files, Tune's checkpoint folders, and every access to the storage's filesystem (the
only module that imports pyarrow, in the functions that use it).

A run folder (``srdc-train``'s ``--out``, a study trial's working directory) holds the run's :data:`HISTORY` (one
line per epoch) and :data:`SUMMARY`, written atomically after every epoch (:func:`atomic_write`), its
:data:`CHECKPOINT` and :data:`LOCK` (:mod:`srdc.runio`), and its figure records in :data:`FIGURES_DIR`
(:func:`record_path`). A trial folder in the study's storage (a local folder, or ``s3://``/``gs://``) holds besides
Tune's own files (:data:`PARAMS_FILE`, :data:`RESULT_FILE`, :data:`TUNE_ERROR_FILE`), a diverged trial's
:data:`DIVERGED_FILE`, a refused trial's :data:`REFUSED_FILE`, and Tune's checkpoint folders
(``checkpoint_NNNNNN``), each with every run's ``KEY/CHECKPOINT`` and the trial's :data:`NODES_FILE`. The study's
folder holds its :data:`LAUNCH_FILE`, its :data:`RESULTS_FOLDER`, a search's :data:`OPTUNA_DB`, the driver's
:data:`LEASE_FILE` and the :data:`SIGNATURES_FILE` of its :data:`TRUSTED_FILES`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

from srdc.errors import SRDCInputError

if TYPE_CHECKING:
    import pyarrow.fs

logger = logging.getLogger(__name__)

# a run's files
SUMMARY = "summary.json"
HISTORY = "history.jsonl"
CHECKPOINT = "checkpoint.pt"
LOCK = "srdc.lock"
FIGURES_DIR = "figures"  # the folder of a run's (a trial's) figures
RECORD_NAME = "record.pt"  # a run's figure record: PREFIXrecord.pt in FIGURES_DIR
RECORD_FILES = f"{FIGURES_DIR}/*{RECORD_NAME}"  # every figure record of a trial folder
FIGURE_FILES = f"{FIGURES_DIR}/*.png"  # every figure of a trial folder
FIGURES_ERROR = f"{FIGURES_DIR}/error.txt"  # why a trial's figures could not be drawn
# a trial whose loss or metrics became NaN or infinite says why in this file of its folder
DIVERGED_FILE = "diverged.txt"
# a trial refused by its own input (a checkpoint that would run code, a missing dataset...) says why in this file
REFUSED_FILE = "refused.txt"
# the Ray nodes a trial ran on, in order, saved with each checkpoint
NODES_FILE = "nodes.json"
# the files Tune writes into each trial folder (ray.tune.result.EXPR_PARAM_FILE, EXPR_RESULT_FILE, EXPR_ERROR_FILE)
PARAMS_FILE = "params.json"
RESULT_FILE = "result.json"
TUNE_ERROR_FILE = "error.txt"
# what the trial's process printed (its stdout and stderr, RunConfig(log_to_file=...)), instead of the study's console
TRIAL_LOG = "trial.log"
# Tune's checkpoint folders in a trial folder: checkpoint_000000, checkpoint_000001, ...
CHECKPOINT_PREFIX = "checkpoint_"
# a study's folder: its launch, its results (srdc.report.RESULT_FILES), a search's Optuna study
LAUNCH_FILE = "srdc_study.json"
# the study's driver lease (:mod:`srdc.harness.lease`) and the signatures of the files a --resume trusts
# (:mod:`srdc.harness.signatures`), in its folder
LEASE_FILE = "srdc_lease.json"
SIGNATURES_FILE = "srdc_signatures.json"
# the files of a sweep folder that Ray unpickles or the harness trusts on --resume: Tune's tuner.pkl, its experiment
# state (JSON that may hold pickles), the searcher's and callbacks' state (pickles), and the launch file
TRUSTED_FILES = ("*.pkl", "*state*", LAUNCH_FILE)
RESULTS_FOLDER = "results"
OPTUNA_DB = "optuna.db"
# the filesystems Tune's storage takes through pyarrow
STORAGE_SCHEMES = ("s3", "gs", "gcs", "hdfs", "abfs", "abfss", "file")
# the URI scheme of a remote storage, by the type of Tune's pyarrow filesystem for it
URI_SCHEMES = {"s3": "s3", "gcs": "gs"}


@dataclass(frozen=True)
class Selection:
    """Which files of a folder a fetch copies: each of ``names`` (a name, or a pattern of its folder and name such as
    :data:`RECORD_FILES`) at most ``depth`` folders down."""

    names: tuple[str, ...]
    depth: int


# the trainable's files of one trial folder (the study logger ends a trial's run with them)
TRIAL_OUTPUTS = Selection((SUMMARY, HISTORY, RECORD_FILES, FIGURE_FILES), depth=1)
# what a backfill reads of every trial folder of a sweep folder, or of the storage folder above it (not the
# files inside checkpoints, deeper down)
BACKFILL_FILES = Selection((PARAMS_FILE, RESULT_FILE, TUNE_ERROR_FILE, SUMMARY, HISTORY, RECORD_FILES, FIGURE_FILES),
                           depth=3)


# -- a run folder -------------------------------------------------------------------------------------------------
def temporary_path(path: Path) -> Path:
    """Where this process writes ``path`` before renaming it: ``NAME.<pid>.tmp`` beside it."""
    return path.with_name(f"{path.name}.{os.getpid()}.tmp")


def atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    """``write(tmp)`` the :func:`temporary_path` of ``path``, then rename it to ``path`` (removed when it fails)."""
    tmp = temporary_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_folder(path: Path, write: Callable[[Path], list[Path]]) -> list[Path]:
    """``write(folder)`` into a new folder beside ``path`` (``NAME.<pid>.tmp``), then put it in place of ``path``:
    ``path`` holds the earlier folder whole or the new one, never a mix (a write that fails or is interrupted, a
    SIGTERM included, removes the new folder and leaves the earlier one as it was). The written paths, in ``path``."""
    new, old = (path.with_name(f"{path.name}.{os.getpid()}.{suffix}") for suffix in ("tmp", "old"))
    shutil.rmtree(new, ignore_errors=True)
    try:
        new.mkdir(parents=True)
        written = write(new)
        if path.exists():
            os.replace(path, old)
        os.replace(new, path)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        if old.exists() and not path.exists():
            os.replace(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return [path / written_path.relative_to(new) for written_path in written]


def write_history(out: Path, history: list[dict[str, Any]]) -> None:
    """``history`` as ``out/HISTORY``, one JSON object (sorted keys) per epoch."""
    lines = "".join(json.dumps(row, sort_keys=True) + "\n" for row in history)
    atomic_write(out / HISTORY, lambda p: p.write_text(lines))


def history_rows(text: str) -> list[dict[str, Any]]:
    """The rows of a history file's ``text``."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def read_history(out: Path) -> list[dict[str, Any]]:
    """The rows of ``out/HISTORY``."""
    return history_rows((out / HISTORY).read_text())


def write_summary(out: Path, summary: dict[str, Any]) -> None:
    """``summary`` as ``out/SUMMARY``."""
    atomic_write(out / SUMMARY, lambda p: p.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n"))


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path`` (a :data:`SUMMARY`, Tune's :data:`PARAMS_FILE`), or ``None`` when it is missing
    or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def holds_trial_files(folder: Path) -> bool:
    """Whether the local ``folder`` holds a file the trainable writes."""
    return (folder / SUMMARY).is_file() or (folder / HISTORY).is_file()


def record_path(folder: Path, prefix: str = "") -> Path:
    """Where a run saves its figure record in the trial folder ``folder`` (``prefix``: ``KEY.`` with several
    runs)."""
    return folder / FIGURES_DIR / f"{prefix}{RECORD_NAME}"


def write_diverged(folder: Path, reason: str) -> None:
    """Say in the trial folder ``folder`` why the trial diverged."""
    (folder / DIVERGED_FILE).write_text(f"{reason}\n")


def write_refused(folder: Path, reason: str) -> None:
    """Say in the trial folder ``folder`` why the trial was refused (not retried: the same input fails the same way)."""
    (folder / REFUSED_FILE).write_text(f"{reason}\n")


def write_figures_error(folder: Path, reason: str) -> None:
    """Say in the trial folder ``folder`` why its figures could not be drawn."""
    path = folder / FIGURES_ERROR
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{reason}\n")


def write_nodes(checkpoint: Path, nodes: list[str]) -> None:
    """Save the Ray nodes the trial ran on with its ``checkpoint``."""
    (checkpoint / NODES_FILE).write_text(json.dumps(nodes))


def read_nodes(checkpoint: Path) -> list[str]:
    """The Ray nodes the trial ran on before, as saved with its ``checkpoint`` (none in an older checkpoint)."""
    path = checkpoint / NODES_FILE
    return json.loads(path.read_text()) if path.is_file() else []


def release_trial_files(trial_dir: Path) -> None:
    """After the last report, take the trial's files out of its working directory ``trial_dir``: that report's
    checkpoint made Tune copy them to the trial's folder in the storage, and wait for it; Tune copies the working
    directory once more when the trial stops, while the driver reads those files to log them, so that a copy left
    here could make the driver read a file half rewritten."""
    for name in (HISTORY, SUMMARY):
        (trial_dir / name).unlink(missing_ok=True)
    shutil.rmtree(trial_dir / FIGURES_DIR, ignore_errors=True)


# -- the study's folder in the storage (local, NFS, s3://, gs://) ---------------------------------------------------
def write_launch_file(study_path: str, text: str) -> None:
    """Write ``text`` as the :data:`LAUNCH_FILE` of the study folder ``study_path`` (created when missing)."""
    import pyarrow.fs

    filesystem, folder = pyarrow.fs.FileSystem.from_uri(study_path)
    filesystem.create_dir(folder, recursive=True)
    with filesystem.open_output_stream(f"{folder}/{LAUNCH_FILE}") as out:
        out.write(text.encode())


def read_launch_file(study_path: str) -> str | None:
    """The text of the :data:`LAUNCH_FILE` of the study folder ``study_path``; ``None`` when there is none. An
    unreadable storage is one :class:`SRDCInputError`."""
    import pyarrow.fs

    try:
        filesystem, folder = pyarrow.fs.FileSystem.from_uri(study_path)
        with filesystem.open_input_stream(f"{folder}/{LAUNCH_FILE}") as stream:
            return stream.read().decode()
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise SRDCInputError(f"cannot read the study folder {study_path} ({error}); check --storage-path and its "
                             f"credentials") from None


def read_storage_file(folder: str, name: str) -> bytes | None:
    """The bytes of the file ``name`` in the storage folder ``folder`` (local, NFS, ``s3://``, ``gs://``); ``None``
    when there is none."""
    import pyarrow.fs

    filesystem, root = pyarrow.fs.FileSystem.from_uri(folder)
    try:
        with filesystem.open_input_stream(f"{root}/{name}") as stream:
            return stream.read()
    except FileNotFoundError:
        return None


def write_storage_file(folder: str, name: str, data: bytes) -> None:
    """Write ``data`` as the file ``name`` of the storage folder ``folder`` (created when missing)."""
    import pyarrow.fs

    filesystem, root = pyarrow.fs.FileSystem.from_uri(folder)
    filesystem.create_dir(root, recursive=True)
    with filesystem.open_output_stream(f"{root}/{name}") as out:
        out.write(data)


def remove_storage_file(folder: str, name: str) -> None:
    """Remove the file ``name`` of the storage folder ``folder`` (nothing when it is gone already)."""
    import pyarrow.fs

    filesystem, root = pyarrow.fs.FileSystem.from_uri(folder)
    try:
        filesystem.delete_file(f"{root}/{name}")
    except FileNotFoundError:
        pass


def trusted_files(folder: str) -> list[str]:
    """The names of the :data:`TRUSTED_FILES` directly in the storage folder ``folder`` (none when it is missing)."""
    import pyarrow.fs

    filesystem, root = pyarrow.fs.FileSystem.from_uri(folder)
    found = filesystem.get_file_info(pyarrow.fs.FileSelector(root, allow_not_found=True))
    return sorted(info.base_name for info in found
                  if info.type == pyarrow.fs.FileType.File and is_trusted(info.base_name))


def is_trusted(name: str) -> bool:
    """Whether a file of a sweep folder named ``name`` is one of the :data:`TRUSTED_FILES`."""
    return name not in (LEASE_FILE, SIGNATURES_FILE) and any(fnmatchcase(name, pattern) for pattern in TRUSTED_FILES)


def copy_into_storage(folder: Path, uri: str) -> None:
    """Copy the local ``folder`` to ``uri`` in the storage."""
    import pyarrow.fs

    pyarrow.fs.copy_files(str(folder), uri)


def read_histories(sweep_path: str, trials: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The history rows of each of the trial folders named ``trials`` in the sweep folder ``sweep_path``
    (local, or ``s3://``/``gs://``) that holds a :data:`HISTORY`."""
    import pyarrow.fs

    filesystem, root = pyarrow.fs.FileSystem.from_uri(sweep_path)
    found = {}
    for trial in trials:
        path = f"{root}/{trial}/{HISTORY}"
        if filesystem.get_file_info(path).type == pyarrow.fs.FileType.File:
            with filesystem.open_input_stream(path) as stream:
                found[trial] = history_rows(stream.read().decode())
    return found


def storage_location(filesystem: pyarrow.fs.FileSystem, path: str) -> Path | str | None:
    """Where ``path`` on Tune's storage ``filesystem`` is: a local path, a URI (``s3://``, ``gs://``), or ``None``
    for a filesystem of no known scheme."""
    import pyarrow.fs

    if isinstance(filesystem, pyarrow.fs.LocalFileSystem):
        return Path(path)
    scheme = URI_SCHEMES.get(filesystem.type_name)
    return f"{scheme}://{path}" if scheme else None


# -- the one fetch of a remote folder's files ---------------------------------------------------------------------
def matches(relative: PurePosixPath, names: tuple[str, ...], depth: int) -> bool:
    """Whether the file at ``relative`` is one of ``names`` at most ``depth`` folders down: a name (:data:`SUMMARY`)
    or a pattern of its folder and name (``figures/*.png``, one folder deeper)."""
    for name in names:
        parts = len(PurePosixPath(name).parts)
        tail = PurePosixPath(*relative.parts[-parts:])
        if len(relative.parts) <= depth + parts - 1 and len(relative.parts) >= parts and fnmatchcase(str(tail), name):
            return True
    return False


def fetch_trial_files(uri: str, into: Path, selection: Selection, on_error: Literal["warn", "raise"]) -> Path:
    """Copy the files ``selection`` picks (:func:`matches`) below ``uri`` (``s3://``, ``gs://``: read with the usual
    credentials and ``AWS_ENDPOINT_URL``) into ``into``, in the same layout; ``into``. An unreadable storage is, by
    ``on_error``, a warning (the files are left out: the study logger ends the trial's run without them, and
    ``srdc-report --sync`` can add them later) or one :class:`SRDCInputError` (a backfill needs them)."""
    try:
        return _copy_selected(uri, selection, into)
    except (OSError, ValueError) as error:
        if on_error == "raise":
            raise SRDCInputError(f"cannot read {uri} ({error}); check --storage-path and its credentials") from None
        logger.warning("cannot read the trial files in %s (%s)", uri, error)
        return into


def _copy_selected(uri: str, selection: Selection, into: Path) -> Path:
    import pyarrow.fs

    filesystem, root = pyarrow.fs.FileSystem.from_uri(uri)
    deepest = selection.depth + max(len(PurePosixPath(name).parts) for name in selection.names) - 1
    found = filesystem.get_file_info(pyarrow.fs.FileSelector(root, allow_not_found=True, recursive=deepest > 1))
    for info in found:
        relative = PurePosixPath(info.path).relative_to(root)
        if info.type == pyarrow.fs.FileType.File and matches(relative, selection.names, selection.depth):
            (into / relative).parent.mkdir(parents=True, exist_ok=True)
            with filesystem.open_input_stream(info.path) as stream:
                (into / relative).write_bytes(stream.read())
    return into


# -- Tune's checkpoint folders of a trial folder in the storage -----------------------------------------------------
def checkpoint_names(filesystem: pyarrow.fs.FileSystem, trial_path: str) -> list[str]:
    """The names of the checkpoint folders (``checkpoint_NNNNNN``) in the trial folder ``trial_path`` (in order)."""
    import pyarrow.fs

    found = filesystem.get_file_info(pyarrow.fs.FileSelector(trial_path))
    return sorted(info.base_name for info in found
                  if info.type == pyarrow.fs.FileType.Directory and info.base_name.startswith(CHECKPOINT_PREFIX))


def holds_every_run(filesystem: pyarrow.fs.FileSystem, checkpoint: str, keys: list[str]) -> bool:
    """Whether the checkpoint folder ``checkpoint`` holds ``KEY/CHECKPOINT`` of every run ``keys`` names."""
    import pyarrow.fs

    found = filesystem.get_file_info([f"{checkpoint}/{key}/{CHECKPOINT}" for key in keys])
    return all(info.type == pyarrow.fs.FileType.File for info in found)


def nearest_complete_checkpoint(filesystem: pyarrow.fs.FileSystem, checkpoint: str, keys: list[str]) -> str | None:
    """The name of the trial's checkpoint folder nearest to ``checkpoint`` (newer ones first) that holds every run
    (:func:`holds_every_run`); ``None`` when none does."""
    folder, name = checkpoint.rsplit("/", 1)
    names = checkpoint_names(filesystem, folder)
    nearest = [other for other in names if other > name] + [other for other in reversed(names) if other < name]
    return next((other for other in nearest if holds_every_run(filesystem, f"{folder}/{other}", keys)), None)


def recover_checkpoint(filesystem: pyarrow.fs.FileSystem, checkpoint: str) -> str | None:
    """When the checkpoint folder ``checkpoint`` is gone, copy the trial's next checkpoint (its oldest newer one)
    there; the name of the one copied (``None``: ``checkpoint`` exists, or no newer one does)."""
    import pyarrow.fs

    if filesystem.get_file_info(checkpoint).type != pyarrow.fs.FileType.NotFound:
        return None
    folder, name = checkpoint.rsplit("/", 1)
    newer = [other for other in checkpoint_names(filesystem, folder) if other > name]
    if not newer:
        return None
    pyarrow.fs.copy_files(f"{folder}/{min(newer)}", checkpoint, source_filesystem=filesystem,
                          destination_filesystem=filesystem)
    return min(newer)
