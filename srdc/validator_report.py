"""Which label-free validator to trust: over the runs of a study, how good the epoch and the configuration each
validator picks are, against the oracle's picks, and how well its values rank the models by target accuracy.

For every registered validator (:mod:`srdc.validators`), from records (one per trial, as
:meth:`srdc.tracking.Tracker.study_trials` gives them) that carry their per-epoch ``history``:

* **epoch pick**: the mean over runs of the accuracy at the epoch the validator picks (``acc_labelfree_<name>``,
  :mod:`srdc.selection`), and its mean gap to the oracle's pick (``acc_best_oracle``, chosen with target labels);
* **epoch rank correlation**: the mean over runs of Spearman's rho between the validator (signed so that higher
  is better) and the target accuracy across the run's trained epochs;
* **configuration pick** (per task, among its runs: the configurations of a search, or the cells of a grid): the
  accuracy of the run whose best validator value is the best, its gap to the best run by the oracle, and rho
  between the runs' best validator values and their accuracies at the validator's epoch; averaged over tasks.

The same epoch-pick gaps and rank correlations per method and per task (:func:`scores_by`, :func:`render_gaps`),
the validators ranked by their mean gap. Pure functions of the records; ``srdc-report --validators`` reads them from
the tracking store.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from srdc.base import TrialStatus
from srdc.validators import VALIDATORS, Validator

ACCURACY = "acc_target"


@dataclass(frozen=True)
class ValidatorScore:
    """How one validator did over a study's finished runs (``None``: not measurable, e.g. one run per task)."""

    name: str
    better: str
    runs: int
    epoch_accuracy: float | None
    epoch_gap: float | None
    epoch_gap_se: float | None
    epoch_rho: float | None
    config_accuracy: float | None
    config_gap: float | None
    config_rho: float | None


def ranks(values: Sequence[float]) -> list[float]:
    """The ranks of ``values`` (1 = smallest), ties given their average rank."""
    order = sorted(range(len(values)), key=lambda index: values[index])
    result = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            result[order[position]] = (start + end) / 2 + 1
        start = end + 1
    return result


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation of ``x`` and ``y``; ``None`` below 3 pairs or when either is constant."""
    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    return statistics.correlation(ranks(x), ranks(y))


def signed(validator: Validator, value: float) -> float:
    """The validator's value with higher = better."""
    return value if validator.better == "max" else -value


def epoch_rho(validator: Validator, history: list[dict[str, float]]) -> float | None:
    """Spearman's rho of the validator and the target accuracy over the run's trained epochs (1..E)."""
    rows = [row for row in history if row.get("epoch", 0) >= 1 and validator.metric in row and ACCURACY in row
            and math.isfinite(row[validator.metric])]
    return spearman([signed(validator, row[validator.metric]) for row in rows], [row[ACCURACY] for row in rows])


def best_value(validator: Validator, history: list[dict[str, float]]) -> float | None:
    """The run's best validator value over its trained epochs, higher = better (the value behind its pick)."""
    values = [signed(validator, row[validator.metric]) for row in history
              if row.get("epoch", 0) >= 1 and math.isfinite(row.get(validator.metric, math.nan))]
    return max(values, default=None)


def _mean(values: list[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return statistics.fmean(known) if known else None


def _standard_error(values: list[float]) -> float | None:
    """The standard error of the mean of ``values`` (sample std / sqrt(n)); ``None`` below two values."""
    return statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None


def config_scores(validator: Validator, runs: list[dict[str, Any]]) -> tuple[float, float, float | None] | None:
    """Among the ``runs`` of one task: the accuracy of the validator's pick, its gap to the oracle's best run and
    rho between best validator values and accuracies; ``None`` with fewer than two comparable runs."""
    pick_key = f"acc_labelfree_{validator.name}"
    scored = [(best_value(validator, run["history"]), run) for run in runs if pick_key in run]
    scored = [(value, run) for value, run in scored if value is not None]
    if len(scored) < 2:
        return None
    picked = max(scored, key=lambda pair: pair[0])[1]
    oracle = max(run["acc_best_oracle"] for _, run in scored)
    rho = spearman([value for value, _ in scored], [run[pick_key] for _, run in scored])
    return picked[pick_key], oracle - picked[pick_key], rho


def finished_with_history(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The finished ``records`` that carry a per-epoch ``history``."""
    return [record for record in records if record.get("status") == TrialStatus.FINISHED and record.get("history")]


def validator_scores(records: list[dict[str, Any]]) -> list[ValidatorScore]:
    """One :class:`ValidatorScore` per registered validator over the finished ``records`` that carry a history."""
    runs = finished_with_history(records)
    by_task: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_task.setdefault(run["task"], []).append(run)
    scores = []
    for validator in VALIDATORS.values():
        pick_key = f"acc_labelfree_{validator.name}"
        picked = [run for run in runs if pick_key in run]
        gaps = [run["acc_best_oracle"] - run[pick_key] for run in picked]
        per_task = [config_scores(validator, task_runs) for task_runs in by_task.values()]
        per_task = [scores_ for scores_ in per_task if scores_ is not None]
        scores.append(ValidatorScore(
            name=validator.name, better=validator.better, runs=len(picked),
            epoch_accuracy=_mean([run[pick_key] for run in picked]),
            epoch_gap=_mean(list(gaps)), epoch_gap_se=_standard_error(gaps),
            epoch_rho=_mean([epoch_rho(validator, run["history"]) for run in picked]),
            config_accuracy=_mean([accuracy for accuracy, _, _ in per_task]),
            config_gap=_mean([gap for _, gap, _ in per_task]),
            config_rho=_mean([rho for _, _, rho in per_task]),
        ))
    return scores


def scores_by(records: list[dict[str, Any]], field: str) -> dict[str, dict[str, ValidatorScore]]:
    """:func:`validator_scores` over the records of each value of ``field`` (``variant``: per method; ``task``:
    per task), by value, then by validator name."""
    values = sorted({str(record[field]) for record in records if field in record})
    return {value: {score.name: score for score in validator_scores(
        [record for record in records if str(record.get(field)) == value])} for value in values}


def render_gaps(by_value: dict[str, dict[str, ValidatorScore]], field: str) -> str:
    """Per value of ``field`` (a column each), every validator's mean gap of its epoch pick to the oracle's and its
    rho across epochs; the validators ranked by their gap averaged over the values (the smallest first)."""
    names = list(VALIDATORS)
    mean_gap = {name: _mean([scores[name].epoch_gap for scores in by_value.values() if name in scores])
                for name in names}
    ranked = sorted(names, key=lambda name: (mean_gap[name] is None, mean_gap[name] or 0.0))
    lines = [f"**by {field}: gap of the epoch pick to the oracle's (rho across epochs)**", "",
             "| validator | mean gap | " + " | ".join(by_value) + " |", "|---" * (len(by_value) + 2) + "|"]
    for name in ranked:
        cells = [f"{_text(scores[name].epoch_gap)} ({_text(scores[name].epoch_rho, 2)})" if name in scores else "—"
                 for scores in by_value.values()]
        lines.append(f"| {name} | {_text(mean_gap[name])} | " + " | ".join(cells) + " |")
    return "\n".join([*lines, ""])


def _text(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def render_scores(scores: list[ValidatorScore], study: str) -> str:
    """The scores as a Markdown table with its caption."""
    lines = [f"**{study}: label-free validators against the oracle**", "",
             "| validator | better | runs | epoch pick acc | gap to oracle | se | rho (epochs) | config pick acc "
             "| gap to oracle | rho (configs) |", "|---" * 10 + "|"]
    for score in scores:
        cells = [score.name, score.better, str(score.runs), _text(score.epoch_accuracy), _text(score.epoch_gap),
                 _text(score.epoch_gap_se), _text(score.epoch_rho, 2), _text(score.config_accuracy),
                 _text(score.config_gap), _text(score.config_rho, 2)]
        lines.append("| " + " | ".join(cells) + " |")
    caption = ("*Epoch pick: target accuracy at the epoch each validator picks, mean over runs; gap: the oracle's "
               "pick (target labels) minus it, se its standard error over runs (sample std / sqrt(runs)). rho: "
               "Spearman's rank correlation of the validator with target accuracy, across a run's epochs (mean over "
               "runs) and across a task's runs at their best validator values (mean over tasks). Config pick: per "
               "task, the run with the best validator value.*")
    return "\n".join([*lines, "", caption, ""])


def validator_report(records: list[dict[str, Any]], title: str, fields: Sequence[str] = ("variant", "task")) -> str:
    """The validator comparison over ``records`` (finished runs with their ``history``): the scores of every
    validator (:func:`render_scores`), then its epoch-pick gaps per value of each of ``fields``
    (:func:`render_gaps`: per method, per task, per study). Empty when no finished record has a history and a
    validator's pick."""
    finished = finished_with_history(records)
    scores = validator_scores(finished)
    if not any(score.runs for score in scores):
        return ""
    return "\n".join([render_scores(scores, title),
                      *(render_gaps(scores_by(finished, field), field) for field in fields)])
