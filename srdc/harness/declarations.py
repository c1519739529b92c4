"""What a ``studies/*.py`` script declares: a :class:`Study` (or a :class:`Search` around one) and its
:class:`SmokeTest`, plus the task settings that several studies share.

A declaration is plain data, checked when it is made (unknown variants or config fields, a grid dimension that
is also fixed, ...): a wrong study file fails on import with one clear message, before anything runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from srdc.base import parse_task
from srdc.config import default_of, options
from srdc.errors import SRDCInputError
from srdc.methods import METHODS

# the grid's own dimensions; everything else in a trial config is an SRDCConfig field
GRID_KEYS = ("task", "variant", "seed")
DATA_ROOT_ENV = "SRDC_DATA_ROOT"

# what a --smoke-test's tables are, printed above them
SMOKE_NOTE = ("--smoke-test: a plumbing check, not a result: the study's grid on tiny stand-in data for two epochs; "
              "its numbers show that every trial runs end to end, nothing about the method (every switch acts on the "
              "training: see each run's losses; on 200 target images two variants can still tie in a cell)")
# every smoke trial: 200 samples a domain, and lambda_p and lr stepping every iteration, so that lambda > 0 from the
# first trained epoch on (per epoch it is 0 in the first) and every switch of eq. (11) acts in every trained epoch
SMOKE_CONFIG = {"max_samples": 200, "batch_size": 32, "schedule_unit": "iteration"}

# (records, selection, planned seeds, study name) -> the Markdown a study prints for one model selection
TablesFunction = Callable[[list[dict[str, Any]], str, int, str], str]


def is_grid(values: Any) -> bool:
    """A list or tuple of values is a grid dimension; anything else in ``Study.grid`` is a Tune search domain."""
    return isinstance(values, list | tuple)


@dataclass(frozen=True)
class Sampled:
    """A searched field's Tune search domain, declared without importing Ray (a study script's ``--help`` stays
    light): ``Sampled("loguniform", (1e-3, 1e-1))`` stands for ``tune.loguniform(1e-3, 1e-1)``, made by
    :meth:`domain` when the study is planned. A ``Study.grid`` may hold either."""

    kind: str
    args: tuple[float, ...]

    def domain(self) -> Any:
        from ray import tune

        return getattr(tune, self.kind)(*self.args)


def loguniform(low: float, high: float) -> Sampled:
    """``tune.loguniform(low, high)``, declared lightly."""
    return Sampled("loguniform", (low, high))


def uniform(low: float, high: float) -> Sampled:
    """``tune.uniform(low, high)``, declared lightly."""
    return Sampled("uniform", (low, high))


def tune_domain(values: Any) -> Any:
    """A grid entry as Tune takes it: a :class:`Sampled` made into its Tune domain, anything else as it is."""
    return values.domain() if isinstance(values, Sampled) else values


@dataclass(frozen=True)
class SmokeTest:
    """How ``--smoke-test`` shrinks a study: the same grid on ``dataset`` with ``domains`` mapped, tiny budget.

    ``domains`` maps each domain of the study's tasks (as written there, e.g. ``A``) to a domain of ``dataset``.
    ``config`` is applied to every smoke trial (after the study's own ``config``; default :data:`SMOKE_CONFIG`).
    The smoke test is a plumbing check (:data:`SMOKE_NOTE`, printed above its tables).
    """

    domains: Mapping[str, str]
    dataset: str = "embedded"
    epochs: int = 2
    config: Mapping[str, Any] = field(default_factory=lambda: dict(SMOKE_CONFIG))

    def task(self, task: str) -> str:
        """The smoke task standing for ``task`` (``A->W`` -> ``digits->digits_photo``)."""
        source, target = parse_task(task)
        missing = [domain for domain in (source, target) if domain not in self.domains]
        if missing:
            raise SRDCInputError(f"the smoke test maps no domain for {', '.join(missing)} (task {task}); "
                                 f"add it to SmokeTest(domains=...)")
        return f"{self.domains[source]}->{self.domains[target]}"

    def stand_ins(self, tasks: Iterable[str]) -> dict[str, str]:
        """Each smoke task -> the study's task it stands in for (``digits->digits_photo`` -> ``A->W``): what the
        smoke test's tables name their columns after."""
        return {self.task(task): task for task in tasks}


@dataclass(frozen=True)
class Study:
    """A study: one Tune trial per cell of ``tasks`` x ``variants`` x ``seeds`` x ``grid``.

    * ``grid``: extra config dimensions, ``{field: values}``; a list of values is a grid dimension, a search
      domain (:func:`loguniform`, which keeps ``--help`` free of Ray, or a Tune domain) is sampled (by a
      :class:`Search`).
    * ``config``: fixed config fields of every trial (``{"setting": "inductive", "epochs": 200}``).
    * ``task_config``: config fields of single tasks, ``{"W->A": {"mu_init": "target"}}``.
    * ``rows``: the config field that makes the rows of the printed tables (the other grid fields split them).
    * ``tables``: what the study prints per model selection instead of the mean±std tables
      (``srdc.factorial.factorial_tables`` for the factorial study); ``None``: the tables of ``srdc.report``.
    * ``smoke``: the ``--smoke-test`` mapping (``None``: the study has none).
    """

    name: str
    dataset: str
    tasks: tuple[str, ...]
    variants: tuple[str, ...] = ("srdc",)
    seeds: tuple[int, ...] = (0, 1, 2)
    grid: Mapping[str, Sequence[Any] | Any] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)
    task_config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    paper_table: str = ""
    rows: str = "variant"
    tables: TablesFunction | None = None
    smoke: SmokeTest | None = None
    description: str = ""

    def __post_init__(self) -> None:
        names = set(options())
        for task in self.tasks:
            parse_task(task)
        for variant in self.variants:
            METHODS.check(variant)
        per_task = {key for values in self.task_config.values() for key in values}
        for where, keys in (("grid", set(self.grid)), ("config", set(self.config)), ("task_config", per_task)):
            bad = sorted(keys - names)
            if bad:
                raise SRDCInputError(f"study {self.name}: {where} names unknown config field(s) {', '.join(bad)}")
            taken = sorted(keys & {*GRID_KEYS, "source", "target"})
            if taken:
                raise SRDCInputError(f"study {self.name}: {where} may not set {', '.join(taken)}; "
                                     f"those are the study's own dimensions")
        clashes = sorted(set(self.grid) & (set(self.config) | per_task))
        if clashes:
            raise SRDCInputError(f"study {self.name}: {', '.join(clashes)} is both a grid dimension and fixed")
        stray = sorted(set(self.task_config) - set(self.tasks))
        if stray:
            raise SRDCInputError(f"study {self.name}: task_config names task(s) not in tasks: {', '.join(stray)}")


@dataclass(frozen=True)
class Search:
    """A search: ``study.grid`` holds the Tune search domains; ``study.tasks`` x ``study.seeds`` is what one
    trial runs (its objective is the mean over them); the rest of ``study`` is fixed.

    ``num_samples``/``smoke_samples``: trials of the search / of ``--smoke-test``. ``rerun_seeds``: the fresh
    seeds the winner is re-run on. ``max_concurrent``: trials at once (the concurrency limit).
    """

    study: Study
    num_samples: int = 40
    smoke_samples: int = 8
    rerun_seeds: tuple[int, ...] = (100, 101, 102)
    max_concurrent: int = 4

    def __post_init__(self) -> None:
        name = self.study.name
        if not self.study.grid or any(is_grid(values) for values in self.study.grid.values()):
            raise SRDCInputError(f"search {name}: study.grid must map each searched field to a Tune domain")
        if len(self.study.variants) != 1:
            raise SRDCInputError(f"search {name}: one variant per search, got {', '.join(self.study.variants)}")


# -- what several studies share -----------------------------------------------------------------------------
# Office-31's A/D/W stand-ins: three disjoint embedded domains (see srdc/data/embedded.py)
OFFICE31_SMOKE = SmokeTest(domains={"A": "digits", "D": "digits_color", "W": "digits_photo"})

# The released code initialises the centres mu from the target K-means centres alone when the target domain is
# amazon (mu_init="target"), and from the mean of source and target centres otherwise (official_code_facts.md).
AMAZON_TARGET = {"mu_init": "target"}
# the released code's webcam->amazon options add q = 0.5 onehot + 0.5 Q (docs/fidelity_notes.md item 23)
WEBCAM_AMAZON = {**AMAZON_TARGET, "aux_kmeans_weight": 0.5}


def office31_task_config(tasks: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``Study.task_config`` of Office-31 ``tasks``: the amazon-target setting for those whose target is A, with the
    released code's K-means mix of q for W->A."""
    return {task: WEBCAM_AMAZON if parse_task(task) == ("W", "A") else AMAZON_TARGET
            for task in tasks if parse_task(task)[1] == "A"}


def default_data_root() -> str:
    """Every study's ``--data-root`` default: ``$SRDC_DATA_ROOT``, else srdc-train's ``--data_root`` default."""
    return os.environ.get(DATA_ROOT_ENV) or default_of("data_root")
