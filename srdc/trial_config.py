"""A trial's config: the flat dict of :class:`srdc.config.SRDCConfig` fields a Ray Tune trial gets (plus ``study``
and the like), the runs it makes (:func:`run_configs`: one, or with ``tasks``/``seeds`` one per task x seed) and what
its MLflow run holds as params (:func:`tracked_config`), live (the study's Tune callback) and in a backfill
(``srdc-report --sync``) alike.
"""

from __future__ import annotations

from typing import Any

from srdc.config import SRDCConfig, options
from srdc.errors import SRDCInputError
from srdc.methods import tracked_fields

# trial-config keys that describe the trial, not a run
TRIAL_KEYS = frozenset({"study", "search_objective", "checkpoint_every"})
# with ``tasks``/``seeds`` (a search trial), ``task``/``seed`` only display the trial's runs
MULTI_KEYS = frozenset({"tasks", "seeds", "task", "seed"})


def run_configs(trial_config: dict[str, Any]) -> list[SRDCConfig]:
    """The configs of the trial's runs (unknown fields are an error, not silently dropped)."""
    base = {key: value for key, value in trial_config.items() if key not in TRIAL_KEYS}
    if "tasks" not in base:
        return [SRDCConfig.from_dict(base)]
    shared = {key: value for key, value in base.items() if key not in MULTI_KEYS}
    return [SRDCConfig.from_dict({**shared, **entry, "seed": seed})
            for entry in base["tasks"] for seed in base["seeds"]]


def tracked_config(trial_config: dict[str, Any]) -> dict[str, Any]:
    """What a trial's run holds as params: the config fields its method reads (:func:`srdc.methods.tracked_fields`:
    the common groups and the method's own) as the trial's run resolves them (defaults included), then the trial
    config's own keys as they are (``study``, ``task``...) but the config fields the method does not read. A search
    trial (``tasks``/``seeds``, several runs) gets the fields its runs share, beside its ``tasks`` and ``seeds``. A
    config that makes no valid run stays as it is: the trial fails with that error itself."""
    try:
        first = run_configs(trial_config)[0]
    except SRDCInputError:
        return dict(trial_config)
    read = tracked_fields(first.variant)
    tracked = {name: value for name, value in first.to_dict().items() if name in read}
    if "tasks" in trial_config:
        per_run = {"source", "target", "seed", *(key for entry in trial_config["tasks"] for key in entry)}
        tracked = {key: value for key, value in tracked.items() if key not in per_run}
    unread = set(options()) - set(read)
    return {**tracked, **{key: value for key, value in trial_config.items() if key not in unread}}
