"""A trial's figures as PNG files: learning curves, confusion matrices, a t-SNE of the features, the source weights.

Drawn at a run's end from its history and the snapshots (:mod:`srdc.figures.snapshot`) of the epochs its
selections pick, with matplotlib (imported when the first figure is drawn, and used without pyplot: a
:class:`matplotlib.figure.Figure` saved by the Agg canvas, no display, no global state):

* ``curves.png``: by epoch, the accuracies, each label-free validator, the losses, lr and lambda; the oracle's pick
  (best target accuracy, with target labels) and the label-free pick are vertical lines. Epoch 0 (the untrained
  model) has no loss, lr or lambda: a curve draws the epochs that have its key only.
* ``confusion.png``: the target confusion matrix at the label-free pick, and at the oracle's pick beside it.
* ``embedding.png``: a 2-D t-SNE (scikit-learn) of the pooled features of the snapshot's source and target samples
  at the label-free pick, coloured by domain and by class.
* ``source_weights.png`` (methods with soft source selection): the histogram of the source weights (eq. 12) at the
  label-free pick; ``source_images.png`` (image datasets): the highest- and lowest-weighted source images (eight
  each: :data:`srdc.figures.snapshot.EXTREMES`).

At its end a run saves its :class:`TrialRecord` (:func:`save_record`, milliseconds) as ``figures/record.pt``
(``figures/KEY.record.pt`` for each run of a trial of several) and draws its figures from it in its own process
(:func:`write_trial_figures`, each as ``PREFIXNAME.png`` beside its record; the prefix is what precedes
``record.pt``): a study's trial before its last report (:mod:`srdc.harness.trainable`), within its drawing budget
(:func:`draw_within_budget`), ``srdc-train`` before it exits. A backfill (``srdc-report --sync``) draws the records
that lack their figures (:func:`draw_records`).

Cost: each panel sits in a fixed cell with fixed margins (:class:`Margins`: matplotlib's constrained layout measured
every text twice and was half the drawing), and the t-SNE runs on at most :data:`srdc.figures.snapshot.POINTS`
points per domain; a smoke run's five figures take about a second on one core, a third of it the t-SNE
(``benchmarks/figure_cost.py``).
"""

from __future__ import annotations

import hashlib
import math
import pickle
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from srdc.base import LABELFREE, ORACLE
from srdc.trialfiles import RECORD_FILES, RECORD_NAME

DPI = 72
# t-SNE iterations (250 of them early exaggeration): of up to SMALL_TSNE points, 350 give the same map (same
# trustworthiness and neighbours' classes on a smoke run's 400 points) 25% faster than 500
TSNE_ITERATIONS, SMALL_TSNE_ITERATIONS, SMALL_TSNE = 500, 350, 500
TSNE_PERPLEXITY = 30.0
DRAWN_FROM = "srdc-record-sha256"  # a figure's PNG text entry: the digest of the record file it was drawn from
ANNOTATED_CLASSES = 12  # confusion matrices up to this many classes print their counts
# history keys of the curves' panels besides the accuracies and the validators
LOSS_PREFIX, ACCURACY_PREFIX = "loss_", "acc_"
SCHEDULE_KEYS = ("lr", "lambda")


@dataclass(frozen=True)
class TrialRecord:
    """What a run's figures are drawn from.

    ``picks``: the epoch each selection picks (:data:`srdc.base.ORACLE`, :data:`srdc.base.LABELFREE`);
    ``selector``: the label-free validator behind the latter; ``validators``: the history keys of every label-free
    validator; ``snapshots``: the snapshot of each selection's pick; ``source_images``: by source index, the
    evaluation-view image (a uint8 tensor, H x W x C, or H x W for one channel) and class of the highest- and
    lowest-weighted source samples at the label-free pick (empty for feature datasets and methods without source
    weights). Plain values and tensors only: a record saved by :func:`save_record` loads with
    ``weights_only=True``."""

    history: list[dict[str, Any]]
    picks: dict[str, int]
    selector: str
    validators: list[str]
    snapshots: dict[str, dict[str, Any]]
    classes: list[str]
    seed: int
    source_images: dict[int, tuple[Any, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class DrawnFigures:
    """What :func:`draw_records` did: the figures it wrote, and a message for each record it could not read."""

    written: list[Path]
    unreadable: list[str]


class UnreadableRecord(ValueError):
    """A record file that is missing, truncated, not a record, or holds more than plain values and tensors."""


def save_record(record: TrialRecord, path: Path) -> None:
    """Save ``record`` at ``path`` (written beside it, then renamed: a reader never sees half a record)."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    torch.save({item.name: getattr(record, item.name) for item in fields(record)}, partial)  # shares kept
    partial.replace(path)


def load_record(path: Path) -> TrialRecord:
    """The record saved at ``path``; :class:`UnreadableRecord` when it cannot be read as one."""
    import torch

    try:
        values = torch.load(path, weights_only=True)
        record = TrialRecord(**values)
        _check_types(record)
        return record
    except (OSError, EOFError, RuntimeError, pickle.UnpicklingError, TypeError, KeyError) as error:
        raise _unreadable(path, "read", error) from None


def _unreadable(path: Path, verb: str, error: Exception) -> UnreadableRecord:
    """The one-line :class:`UnreadableRecord` of the record ``path`` that failed to ``verb`` with ``error``."""
    reason = next(iter(str(error).splitlines()), "")  # one line: weights_only's explanations run long
    return UnreadableRecord(f"cannot {verb} the figure record {path} ({type(error).__name__}: {reason}); its "
                            "figures are left out, the trial's results are complete")


def _require(condition: bool, what: str) -> None:
    """A ``TypeError`` saying what a record's field should be, unless ``condition``."""
    if not condition:
        raise TypeError(f"{what} has the wrong type")


def _check_types(record: TrialRecord) -> None:
    """A ``TypeError`` naming the first field of ``record`` whose type is not what :func:`save_record` writes."""
    import torch

    _require(isinstance(record.history, list) and all(isinstance(row, dict) for row in record.history),
             "history (a list of dicts)")
    _require(isinstance(record.picks, dict) and all(isinstance(record.picks.get(name), int)
                                                    for name in (ORACLE, LABELFREE)), "picks (an epoch each)")
    _require(isinstance(record.selector, str), "selector (a string)")
    for name in ("validators", "classes"):
        values = getattr(record, name)
        _require(isinstance(values, list) and all(isinstance(value, str) for value in values),
                 f"{name} (a list of strings)")
    _require(isinstance(record.seed, int), "seed (an integer)")
    _require(isinstance(record.snapshots, dict) and all(
        isinstance(snapshot, dict) and all(isinstance(value, torch.Tensor) for key, value in snapshot.items()
                                           if key != "epoch")
        for snapshot in record.snapshots.values()), "snapshots (dicts of tensors and the epoch)")
    _require(isinstance(record.source_images, dict) and all(
        isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], torch.Tensor)
        and isinstance(entry[1], int) for entry in record.source_images.values()),
        "source_images (image tensor and class)")


def figure_prefix(record: Path) -> str:
    """The prefix of the figures drawn from the record file ``record``: what precedes ``record.pt``."""
    return record.name.removesuffix(RECORD_NAME)


def record_digest(path: Path) -> str:
    """The SHA-256 of the record file ``path``: what its figures are stamped with (:data:`DRAWN_FROM`)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stale_records(folder: Path) -> list[Path]:
    """The records in the trial folder ``folder`` whose figures are missing or were drawn from another record: their
    ``curves.png``, which every record draws, is stamped with the record's digest (:data:`DRAWN_FROM`; a copy of the
    folder keeps it, whatever the times of the copied files); one drawn before the stamp, by being older."""
    from PIL import Image

    stale = []
    for record in sorted(folder.glob(RECORD_FILES)):
        curves = record.with_name(f"{figure_prefix(record)}curves.png")
        if not curves.is_file():
            stale.append(record)
            continue
        with Image.open(curves) as image:
            stamp = image.info.get(DRAWN_FROM)
        if stamp is None:  # drawn before figures were stamped: judged by its time
            drawn_from_another = curves.stat().st_mtime_ns < record.stat().st_mtime_ns
        else:
            drawn_from_another = stamp != record_digest(record)
        if drawn_from_another:
            stale.append(record)
    return stale


def draw_records(records: list[Path]) -> DrawnFigures:
    """Draw the figures of each record file beside it (:func:`write_trial_figures`); a record that cannot be read,
    or whose values do not draw (the right types, the wrong shapes), is left out with its message."""
    written, unreadable = [], []
    for path in records:
        try:
            record = load_record(path)
            written += write_trial_figures(record, path.parent, figure_prefix(path), drawn_from=path)
        except UnreadableRecord as error:
            unreadable.append(str(error))
        except (TypeError, ValueError, KeyError, IndexError, AttributeError, RuntimeError) as error:
            unreadable.append(str(_unreadable(path, "draw", error)))
    return DrawnFigures(written, unreadable)


@dataclass
class DrawingClock:
    """How long this process's last drawing of a record's figures took (imports apart): what the next is expected to
    cost. One per process (:data:`DRAWING_CLOCK`): a study's worker process draws trial after trial."""

    last_drawing_s: float | None = None


DRAWING_CLOCK = DrawingClock()


def draw_within_budget(record: TrialRecord, path: Path, training_s: float, budget: float) -> bool:
    """Draw the figures of ``record``, saved at ``path``, beside it (:func:`write_trial_figures`) unless this
    process's last drawing (:data:`DRAWING_CLOCK`) took more than ``budget`` times ``training_s``, the run's own
    training time: ``False`` then, the drawing deferred (the record stays, and :func:`stale_records` names it: a
    backfill draws it). A process's first drawing is always made, and measured."""
    expected = DRAWING_CLOCK.last_drawing_s
    if expected is not None and expected > budget * training_s:
        return False
    import matplotlib.figure  # noqa: F401  the imports apart from the measured drawing
    import sklearn.manifold  # noqa: F401

    start = time.perf_counter()
    write_trial_figures(record, path.parent, figure_prefix(path), drawn_from=path)
    DRAWING_CLOCK.last_drawing_s = time.perf_counter() - start
    return True


def write_trial_figures(record: TrialRecord, folder: Path, prefix: str = "",
                        drawn_from: Path | None = None) -> list[Path]:
    """Draw every figure ``record`` allows into ``folder`` as ``PREFIXNAME.png``, each stamped with the digest of the
    record file ``drawn_from`` where given (:func:`stale_records`); returns the files written. Every figure is drawn
    before the first is saved: a record that fails to draw leaves no partial set."""
    drawers = {"curves": draw_curves, "confusion": draw_confusion, "embedding": draw_embedding,
               "source_weights": draw_source_weights, "source_images": draw_source_images}
    figures = {name: draw(record) for name, draw in drawers.items()}
    folder.mkdir(parents=True, exist_ok=True)
    metadata = {DRAWN_FROM: record_digest(drawn_from)} if drawn_from is not None else {}
    written = []
    for name, figure in figures.items():
        if figure is None:
            continue
        path = folder / f"{prefix}{name}.png"
        figure.savefig(path, dpi=DPI, metadata=metadata)
        written.append(path)
    return written


@dataclass(frozen=True)
class Margins:
    """Each panel's margins inside its cell, in inches: room for tick labels, axis labels and titles. Fixed margins
    instead of matplotlib's constrained layout, which measures every text twice and was half of a figure's cost."""

    left: float = 0.6
    right: float = 0.15
    bottom: float = 0.45
    top: float = 0.3


def _figure(panels: int, columns: int, size: tuple[float, float], margins: Margins) -> tuple[Any, list[Any]]:
    """A figure of ``panels`` axes in rows of ``columns``, each in a cell of ``size`` inches with ``margins``."""
    from matplotlib.figure import Figure

    rows = math.ceil(panels / columns)
    width, height = size
    figure = Figure(figsize=(width * columns, height * rows))
    axes = []
    for index in range(panels):
        row, column = divmod(index, columns)
        left = (column * width + margins.left) / (width * columns)
        bottom = ((rows - 1 - row) * height + margins.bottom) / (height * rows)
        axes.append(figure.add_axes((left, bottom, (width - margins.left - margins.right) / (width * columns),
                                     (height - margins.bottom - margins.top) / (height * rows))))
    return figure, axes


def _series(history: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """The epochs that have a finite ``key`` and its values there."""
    points = [(row["epoch"], row[key]) for row in history
              if isinstance(row.get(key), int | float) and math.isfinite(row[key])]
    return [epoch for epoch, _ in points], [value for _, value in points]


def _pick_label(record: TrialRecord, selection: str) -> str:
    epoch = record.picks[selection]
    if selection == ORACLE:
        return f"oracle pick: epoch {epoch} (target labels)"
    return f"label-free pick: epoch {epoch} ({record.selector})"


def draw_curves(record: TrialRecord) -> Any:
    """Accuracies, validators, losses, lr and lambda by epoch, with the picks as vertical lines."""
    keys = {key for row in record.history for key in row}
    accuracies = sorted(key for key in keys if key.startswith(ACCURACY_PREFIX))
    losses = sorted(key for key in keys if key.startswith(LOSS_PREFIX))
    validators = [key for key in record.validators if key in keys and not key.startswith(ACCURACY_PREFIX)]
    panels = [("accuracy (%)", accuracies), *[(key, [key]) for key in validators]]  # acc_source: with the accuracies
    if losses:
        panels.append(("loss", losses))
    panels += [(key, [key]) for key in SCHEDULE_KEYS if key in keys]
    figure, axes = _figure(len(panels), 3, (4.0, 2.8), Margins())
    for axis, (title, series) in zip(axes, panels, strict=True):
        for key in series:
            epochs, values = _series(record.history, key)
            axis.plot(epochs, values, marker=".", label=key)
        for selection, style in ((ORACLE, "--"), (LABELFREE, ":")):
            axis.axvline(record.picks[selection], color="red" if selection == ORACLE else "green", linestyle=style,
                         label=_pick_label(record, selection))
        axis.set_title(title)
        axis.set_xlabel("epoch")
        if len(series) > 1 or axis is axes[0]:
            axis.legend(fontsize="x-small")
    return figure


def draw_confusion(record: TrialRecord) -> Any:
    """The target confusion matrix at the label-free pick, and beside it the oracle's where it picks another epoch
    (one matrix, titled with both picks, where they agree)."""
    selections = [name for name in (LABELFREE, ORACLE) if name in record.snapshots]
    if not selections:
        return None
    agree = len(selections) == 2 and record.picks[LABELFREE] == record.picks[ORACLE]
    selections = selections[:1] if agree else selections
    figure, axes = _figure(len(selections), len(selections), (5.0, 4.8),
                           Margins(left=1.0, bottom=1.0, top=0.5))
    for axis, selection in zip(axes, selections, strict=True):
        counts = record.snapshots[selection]["confusion"].numpy()
        rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        axis.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
        accuracy = 100.0 * np.trace(counts) / max(counts.sum(), 1)
        picked = f"{_pick_label(record, selection)} = oracle pick" if agree else _pick_label(record, selection)
        axis.set_title(f"{picked}\ntarget accuracy {accuracy:.2f}%", fontsize="small")
        axis.set_xlabel("predicted class")
        axis.set_ylabel("true class")
        classes = len(counts)
        if classes <= ANNOTATED_CLASSES:
            for (row, column), count in np.ndenumerate(counts):
                axis.text(column, row, str(count), ha="center", va="center", fontsize="x-small",
                          color="white" if rates[row, column] > 0.5 else "black")
        if classes <= 2 * ANNOTATED_CLASSES:
            names = [name[:12] for name in record.classes]
            axis.set_xticks(range(classes), names, rotation=90, fontsize="xx-small")
            axis.set_yticks(range(classes), names, fontsize="xx-small")
    return figure


def tsne(points: np.ndarray, seed: int) -> np.ndarray:
    """2-D t-SNE of ``points`` (scikit-learn; its own random state, seeded with ``seed``)."""
    from sklearn.manifold import TSNE

    perplexity = min(TSNE_PERPLEXITY, (len(points) - 1) / 3.0)
    iterations = SMALL_TSNE_ITERATIONS if len(points) <= SMALL_TSNE else TSNE_ITERATIONS
    return TSNE(n_components=2, perplexity=perplexity, init="pca", max_iter=iterations,
                random_state=seed).fit_transform(points.astype(np.float32))


def draw_embedding(record: TrialRecord) -> Any:
    """The t-SNE of the label-free pick's source and target features, by domain and by class."""
    snapshot = record.snapshots.get(LABELFREE)
    if snapshot is None or len(snapshot["features"]) < 4:
        return None
    from srdc.figures.snapshot import principal_components  # torch: imported when drawn

    xy = tsne(principal_components(snapshot["features"]).numpy(), record.seed)
    sources = len(snapshot["source_index"])
    labels = np.concatenate([snapshot["source_labels"].numpy(), snapshot["target_labels"].numpy()])
    domains = {"source": slice(0, sources), "target": slice(sources, None)}
    markers = {"source": "o", "target": "x"}
    figure, (by_domain, by_class) = _figure(2, 2, (5.0, 4.6), Margins(left=0.15, bottom=0.15, top=0.5))
    for name, part in domains.items():
        by_domain.scatter(*xy[part].T, s=6, marker=markers[name], label=name, alpha=0.6)
        by_class.scatter(*xy[part].T, s=6, marker=markers[name], c=labels[part], cmap=_class_colours(record),
                         vmin=0, vmax=max(len(record.classes) - 1, 1), alpha=0.7)
    by_domain.legend(fontsize="small", markerscale=2)
    by_domain.set_title(f"t-SNE of pooled features by domain\n{_pick_label(record, LABELFREE)}", fontsize="small")
    by_class.set_title("by true class (o source, x target)", fontsize="small")
    for axis in (by_domain, by_class):
        axis.set_xticks([])
        axis.set_yticks([])
    return figure


def _class_colours(record: TrialRecord) -> str:
    """A qualitative colour map with a colour per class where one exists."""
    classes = len(record.classes)
    return "tab10" if classes <= 10 else "tab20" if classes <= 20 else "turbo"


def draw_source_weights(record: TrialRecord) -> Any:
    """The histogram of the source weights (eq. 12) at the label-free pick."""
    snapshot = record.snapshots.get(LABELFREE)
    if snapshot is None or "source_weights" not in snapshot:
        return None
    weights = snapshot["source_weights"].float().numpy()
    figure, (axis,) = _figure(1, 1, (5.5, 3.5), Margins(left=0.7, bottom=0.5, top=0.5))
    axis.hist(weights, bins=50, color="tab:blue")
    axis.set_xlabel("source weight (eq. 12)")
    axis.set_ylabel("source samples")
    axis.set_title(f"{_pick_label(record, LABELFREE)}\nmean {weights.mean():.3f}, min {weights.min():.3f}, "
                   f"max {weights.max():.3f}", fontsize="small")
    return figure


def draw_source_images(record: TrialRecord) -> Any:
    """The highest-weighted source images (first row) and the lowest-weighted ones (second row), each captioned with
    its weight and class: one mosaic in one axes (an axes per image cost a figure's worth of ticks each)."""
    snapshot = record.snapshots.get(LABELFREE)
    if snapshot is None or "source_weights" not in snapshot or not record.source_images:
        return None
    weights = snapshot["source_weights"].float().numpy()
    rows = [snapshot["weights_top"].tolist(), snapshot["weights_bottom"].tolist()]  # highest, lowest
    columns = max(len(indices) for indices in rows)
    first = next(iter(record.source_images.values()))[0].numpy()
    side, gap = max(first.shape[:2]), max(first.shape[0] // 2, 4)
    channels = () if first.ndim == 2 else (first.shape[2],)
    mosaic = np.full((2 * (side + gap), columns * (side + gap), *channels), 255, dtype=np.uint8)
    figure, (axis,) = _figure(1, 1, (1.3 * columns, 2.8), Margins(left=0.05, right=0.05, bottom=0.05, top=0.3))
    for row, indices in enumerate(rows):
        for column, index in enumerate(indices):
            image, label = record.source_images[index]
            pixels = image.numpy()
            top, left = row * (side + gap) + gap, column * (side + gap)
            mosaic[top:top + pixels.shape[0], left:left + pixels.shape[1]] = pixels
            axis.text(left + side / 2, top - 1, f"w={weights[index]:.3f} {record.classes[label][:10]}",
                      ha="center", va="bottom", fontsize="xx-small")
    axis.imshow(mosaic, cmap="gray" if mosaic.ndim == 2 else None, vmin=0, vmax=255)
    axis.set_title("source images: highest weights (top row), lowest weights (bottom row) at the label-free pick",
                   fontsize="x-small")
    axis.axis("off")
    return figure
