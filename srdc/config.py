"""Every option of a run, each declared once: its default (the paper's, Section 5.1 and Appendix A), type, help,
choices or range, group, and whether it belongs to a run's identity (what must match for ``--resume``).

The flat field names are the contract: ``srdc-train --FIELD``, a study's ``--set FIELD=VALUE``, the keys of a Ray Tune
``param_space``, a trial's MLflow params and the launch file. ``srdc-train --help`` lists the options by group; a
method names the groups it reads beyond :data:`COMMON_GROUPS` (:mod:`srdc.methods`), and a trial logs those alone.

A method added outside this package declares its own options the same way, as a dataclass of :func:`option`
fields (``Method.options``); registering the method adds them (:func:`add_options`), and they then work like
these: on the command line, in ``--set``, in a ``param_space``, in ``to_dict`` and in the resume identity.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from srdc.base import parse_task
from srdc.errors import SRDCInputError

# the option groups, in --help's order, with their titles
GROUPS: dict[str, str] = {
    "data": "data: what to train on",
    "run": "run: what to train",
    "model": "model: the network (Appendix A)",
    "optimisation": "optimisation (Section 5.1, Appendix A)",
    "clustering": "clustering: the preparation pass's K-means (Appendix A): SRDC's, and the baselines' diagnostics",
    "srdc": "srdc: SRDC's switches and losses (docs/fidelity_notes.md)",
    "release": "release: SRDC where the released code departs from the paper (docs/fidelity_notes.md items 22-26)",
    "adversarial": "adversarial: the baselines --variant dann and cdan",
    "selection": "selection: model selection without target labels",
    "execution": "execution: the device, speed and outputs",
}
# the choices of the selection options whose values srdc.selection reads, the default first
SELECTION_EPOCHS = ("trained", "release")
ORACLE_TIES = ("release", "earliest")
# the groups every method reads; the others belong to the methods that name them (srdc.methods)
COMMON_GROUPS = ("data", "run", "model", "optimisation", "selection", "execution")


@dataclass(frozen=True)
class Range:
    """Allowed values of a numeric field: from ``low`` (excluded when ``low_open``) up to ``high``, excluded
    (``None``: no upper bound)."""

    low: float
    low_open: bool = False
    high: float | None = None

    def contains(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        return above and (self.high is None or value < self.high)

    def describe(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {_number(self.low)}"
        return f"in {'(' if self.low_open else '['}{_number(self.low)}, {_number(self.high)})"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True)
class Option:
    """One option, as declared by :func:`option` on a config dataclass field. ``type`` is the field's annotation
    (``"int | None"``: the value may also be ``None``, its documented default meaning); ``identity``: whether a
    checkpoint must have been made with the same value to continue a run (not so for where or how fast it runs)."""

    name: str
    default: Any
    type: str
    group: str
    help: str
    choices: tuple[str, ...] | None = None
    range: Range | None = None
    identity: bool = True

    def check(self, value: Any) -> None:
        """Raise :class:`SRDCInputError` naming the option unless ``value`` is one of its choices, or a finite number
        of its type (an integer for an ``int`` option) in its range, or ``None`` where the type allows it."""
        if self.choices is not None and value not in self.choices:
            raise SRDCInputError(f"unknown {self.name} {value!r}; choose one of: {', '.join(self.choices)}")
        if self.range is None:
            return
        optional, integer = "None" in self.type, self.type.startswith("int")
        if value is None and optional:
            return
        typed = not isinstance(value, bool) and isinstance(value, int if integer else int | float)
        finite = typed and math.isfinite(value)
        if not finite or not self.range.contains(value):
            kind = "" if finite else ("an integer " if integer else "a finite number ")
            none = " or None" if optional else ""
            raise SRDCInputError(f"{self.name} must be {kind}{self.range.describe()}{none}, got {value!r}")


def option(default: Any, group: str, *, help: str, choices: tuple[str, ...] | None = None,
           range: Range | None = None, identity: bool = True) -> Any:
    """A config dataclass field declared as an :class:`Option` (its name and type come from the field)."""
    metadata = {"group": group, "help": help, "choices": choices, "range": range, "identity": identity}
    return dataclasses.field(default=default, metadata=metadata)


def declared_options(options_class: type) -> dict[str, Option]:
    """The :class:`Option` of each :func:`option` field of the dataclass ``options_class``, in order."""
    return {field.name: Option(field.name, field.default, _annotation(field.type), **field.metadata)
            for field in dataclasses.fields(options_class) if "group" in field.metadata}


def _annotation(annotation: Any) -> str:
    return annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))


# options that methods registered from outside this package declared (add_options), by name, and their groups' titles
_ADDED: dict[str, Option] = {}
_ADDED_GROUPS: dict[str, str] = {}


def add_options(options_class: type, group_title: str) -> None:
    """Make the options of ``options_class`` (a dataclass of :func:`option` fields) config fields, their group
    titled ``group_title`` in ``--help``; a name taken by another option is an error."""
    for name, declared in declared_options(options_class).items():
        if name in options() and options()[name] != declared:
            raise SRDCInputError(f"option {name} of {options_class.__name__} is declared already")
        _ADDED[name] = declared
        if declared.group not in GROUPS:
            _ADDED_GROUPS[declared.group] = group_title


def remove_options(options_class: type) -> None:
    """Undo :func:`add_options` for ``options_class``."""
    for name in declared_options(options_class):
        _ADDED.pop(name, None)
    for group in set(_ADDED_GROUPS) - {declared.group for declared in _ADDED.values()}:
        del _ADDED_GROUPS[group]


def options() -> dict[str, Option]:
    """Every option by name: this module's, then those that registered methods added."""
    return {**_BUILT_IN, **_ADDED}


def groups() -> dict[str, str]:
    """Every option group's title by name, in ``--help``'s order: :data:`GROUPS`, then those of added options."""
    return {**GROUPS, **_ADDED_GROUPS}


def options_in(groups: tuple[str, ...] | list[str]) -> list[str]:
    """The names of the options of ``groups``, in declaration order."""
    return [name for name, declared in options().items() if declared.group in groups]


@dataclass
class SRDCConfig:
    """One run. Defaults are the paper's (and the released code's where the text is silent).

    ``structural_source_reg``, ``feature_discrimination`` and ``soft_source_selection`` default to
    ``None``: the variant decides them (:func:`srdc.methods.switches`); set one explicitly to override the variant
    (full factorial). ``added`` holds the values of the options that registered methods declared
    (:func:`add_options`); they read as attributes like the others (``config.toy_pull_weight``).
    """

    # what to train on
    dataset: str = option("embedded", "data", help=
        "the dataset (srdc-data list): embedded, digits, office31, imageclef, officehome, folder, imagelist, features")
    source: str = option("digits", "data", help="the source domain (labelled)")
    target: str = option("digits_photo", "data", help=
        "the target domain (its labels are used for evaluation only, and by the oracle)")
    task: str | None = option(None, "data", help="SOURCE->TARGET in one option (e.g. A->W); sets --source and --target")
    data_root: str = option("data", "data", identity=False, help="the folder holding the datasets (docs/datasets.md)")
    setting: str = option("transductive", "data", choices=("transductive", "inductive"), help=
        "transductive: train and evaluate on the whole target domain; inductive: train on half of it, also report the "
        "other half (acc_target_test)")
    split_seed: int = option(0, "data", range=Range(0), help=
        "the seed of the seeded inductive split, of --source_val_fraction's split and of --max_samples' subset")
    inductive_split: str = option("auto", "data", choices=("auto", "release", "seeded"), help=
        "the inductive setting's split of the target: release (the authors' fixed half lists, Office-31 only; fetched "
        "by srdc-data download), seeded (a stratified 50/50 split seeded by --split_seed); auto: release where the "
        "release ships lists, else seeded")
    source_val_fraction: float = option(0.0, "data", range=Range(0, high=1), help=
        "hold this share of each source class out of training (stratified, seeded by --split_seed) for the label-free "
        "validators that need held-out source data (source_val_accuracy); 0: train on the whole source (the paper)")
    path_prefix: str | None = option(None, "data", identity=False, help=
        "OLD=NEW: rewrite absolute paths in image lists (docs/datasets.md)")
    classes_file: str | None = option(None, "data", help=
        "class names, one per line, for --dataset imagelist or features")
    feature_norm: str = option("zscore", "data", choices=("none", "l2", "zscore", "l1_zscore"), help=
        "--dataset features: how each domain's features are preprocessed, with the domain's own statistics "
        "(docs/datasets.md)")
    image_size: int | None = option(None, "data", range=Range(8), help=
        "the network's input size in pixels; none: the backbone's (224 for ResNets, 28 for the digits CNN)")
    augment: str = option("auto", "data", choices=("auto", "flip_crop", "crop", "none"), help=
        "training augmentation of image datasets; auto: the backbone's profile (flip and crop for ResNets, none for "
        "digits)")
    normalize: str = option("auto", "data", choices=("auto", "imagenet", "half", "none"), help=
        "input normalisation of image datasets; auto: the backbone's profile (ImageNet statistics for ResNets, "
        "mean/std 0.5 for digits)")
    image_cache: str = option("auto", "data", identity=False, help=
        "image datasets: decode each image once into a memory-mapped cache (the same tensors as decoding the files): "
        "auto ($SRDC_CACHE_DIR, else DATA_ROOT/.srdc-cache for a benchmark with a writable data root, else "
        "~/.cache/srdc), a folder, or off (decode at every access)")
    max_samples: int | None = option(None, "data", range=Range(1), help=
        "at most this many samples a domain, a stratified subsample (quick runs, smoke tests); none: all")
    # what to train
    variant: str = option("srdc", "run", help=
        "the method: SRDC, an ablation row of Table 1, source-only, the oracle, or a baseline (README)")
    seed: int = option(0, "run", range=Range(0, high=2**32), help=
        "the seed of the network's initialisation, the mini-batch order and every other random draw")
    epochs: int = option(200, "run", range=Range(1), help=
        "training epochs (the paper's 200); lr and lambda follow p = epoch / epochs")
    # the network (Appendix A)
    backbone: str = option("auto", "model", help=
        "the feature extractor: resnet18/34/50/101, digits_cnn, or identity (--dataset features); auto: the dataset's "
        "default (ResNet-50 for the image benchmarks, the digits CNN for digits; your own images by their size: the "
        "digits CNN up to 64 px, else ResNet-50)")
    weights: str = option("imagenet", "model", help=
        "the backbone's initial weights: imagenet, none (random), or a .pth file")
    bottleneck_dim: int = option(512, "model", range=Range(1), help=
        "width of the bottleneck layer after the backbone (Appendix A)")
    head_bn_init: str = option("ones", "model", choices=("ones", "uniform"), help=
        "the initial scale of the bottleneck's BatchNorm: ones (PyTorch >= 1.2) or uniform, U(0, 1) (PyTorch <= 1.1, "
        "under which the released code ran; docs/fidelity_notes.md)")
    feature_spaces: str = option("both", "model", choices=("both", "pooled", "bottleneck"), help=
        "the feature spaces clustered with centres mu: the pooled backbone features, the bottleneck, or both (Appendix"
        " A)")
    feature_kernel: str = option("paper", "model", choices=("paper", "student_t"), help=
        "soft assignment of eqs. (4)/(9): as printed (paper) or DEC's Student-t (student_t)")
    # optimisation (Section 5.1, Appendix A)
    batch_size: int = option(64, "optimisation", range=Range(2), help=
        "mini-batch size of each domain: a step draws one source and one target batch")
    lr: float = option(0.01, "optimisation", range=Range(0, low_open=True), help=
        "learning rate lr_0 of the new layers, decayed as lr_p = lr_0 / (1 + lr_alpha p)^lr_beta")
    backbone_lr_mult: float | None = option(None, "optimisation", range=Range(0), help=
        "the backbone's learning rate as a multiple of --lr; none: 0.1 for a pretrained backbone, 1 for one trained "
        "from scratch")
    momentum: float = option(0.9, "optimisation", range=Range(0, high=1), help="SGD momentum")
    weight_decay: float = option(0.0001, "optimisation", range=Range(0), help="SGD weight decay")
    lr_alpha: float = option(10.0, "optimisation", range=Range(0), help="alpha of lr_p = lr_0 / (1 + alpha p)^beta")
    lr_beta: float = option(0.75, "optimisation", range=Range(0), help="beta of lr_p = lr_0 / (1 + alpha p)^beta")
    lambda_gamma: float = option(10.0, "optimisation", range=Range(0), help=
        "gamma of lambda_p = scale (2 / (1 + exp(-gamma p)) - 1), the weight ramp of eq. (11)")
    lambda_scale: float = option(1.0, "optimisation", range=Range(0), help=
        "scale of lambda_p = scale (2 / (1 + exp(-gamma p)) - 1)")
    schedule_unit: str = option("epoch", "optimisation", choices=("epoch", "iteration"), help=
        "when lr_p and lambda_p step: once per epoch (released code; lambda is 0 in the first epoch) or at every "
        "iteration")
    prep_batchnorm: str = option("running", "optimisation", choices=("running", "domain"), help=
        "BatchNorm statistics of the preparation pass (the features K-means, the centres, the source weights and the "
        "evaluation use): running (training's running averages over both domains, released code) or domain (each "
        "domain's own, gathered by one extra pass over it each epoch: AdaBN; a held-out target split takes the target "
        "training set's)")
    # the K-means of the preparation pass (Appendix A), SRDC's and that of every method that keeps its diagnostics
    kmeans_iters: int = option(5, "clustering", range=Range(1), help=
        "K-means iterations in each preparation pass (Appendix A)")
    kmeans_chunk: int = option(4096, "clustering", range=Range(1), help=
        "samples per chunk of K-means' distance computation (memory, not results)")
    mu_init: str = option("mean", "clustering", choices=("mean", "target"), help=
        "the centres mu at each epoch: mean of the source and target K-means centres (mean), or the target's alone "
        "(target, the released code's choice when the target is amazon)")
    kmeans_labels: str = option("before_update", "clustering", choices=("final", "before_update"), help=
        "K-means labels: the assignment to the final centres (final) or the last iteration's, made before its centre "
        "update (before_update, released code)")
    empty_centre: str = option("zero", "clustering", choices=("source", "zero"), help=
        "a class nobody predicts starts K-means from its source centroid and an empty cluster keeps its centre "
        "(source), or both get a zero centre (zero, released code: mu = c_s/2, w = 0.5)")
    # SRDC: its switches, and where the paper's text and the released code differ (docs/fidelity_notes.md)
    structural_source_reg: bool | None = option(None, "srdc", help=
        "structural source regularisation, eqs. (10)/(13)/(14): true, false, or none = as the variant says")
    feature_discrimination: bool | None = option(None, "srdc", help=
        "target clustering in the feature spaces with the centres mu, eqs. (4)/(9): true, false, or none = as the "
        "variant says")
    soft_source_selection: bool | None = option(None, "srdc", help=
        "source samples weighted by their similarity to the target centres, eq. (12): true, false, or none = as the "
        "variant says")
    source_pretrain_epochs: int | None = option(None, "srdc", range=Range(0), help=
        "source-only epochs before target clustering; none: a tenth of --epochs (at least 1) without structural source"
        " regularisation (srdc_no_struct), 0 with it (srdc)")
    centres_lr_mult: float = option(0.1, "srdc", range=Range(0), help=
        "the centres mu's learning rate as a multiple of --lr")
    loss_weighting: str = option("code", "srdc", choices=("code", "paper"), help=
        "eq. (11): code = lambda L_t + L_s_out + lambda L_s_feat (released code), paper = L_t + lambda (L_s_out + "
        "L_s_feat) (docs/fidelity_notes.md item 1)")
    aux_normalizer: str = option("batch", "srdc", choices=("batch", "dataset"), help=
        "the column sums of eq. (2) over the mini-batch (batch, released code) or the whole target set (dataset, paper"
        " text)")
    aux_grad: bool = option(True, "srdc", help=
        "gradients flow through the auxiliary distribution q (true, released code) or q is fixed (false, the paper's "
        "alternating optimisation)")
    first_epoch_targets: str = option("kmeans", "srdc", choices=("kmeans", "predictions"), help=
        "the one-hot q of the first clustering epoch (Algorithm 1, line 1): the pooled-space K-means labels (kmeans, "
        "the paper's) or the classifier's predictions of the preparation pass (predictions: for a source warm-up, "
        "--source_pretrain_epochs; docs/fidelity_notes.md, large gap)")
    # where the released code departs from the paper's text (docs/fidelity_notes.md items 22-26): defaults are the
    # release's, measured harmless on the digits; aux_kmeans_weight is 0 but where a study sets the release's W->A
    # value (srdc.harness.declarations.office31_task_config)
    centre_grad_accumulate: bool = option(True, "release", help=
        "never zero the centres mu's gradients (released code; false: zero them every step): each step's SGD sees the "
        "sum of all past gradients plus every step's weight decay (PyTorch 1.1 adds it to .grad)")
    aux_kmeans_weight: float = option(0.0, "release", range=Range(0, high=1), help=
        "w in q = w onehot(K-means labels) + (1 - w) Q (eq. 2) after the first epoch, in every space; the released "
        "code uses 0.5 for webcam->amazon (its beta = 1 - w)")
    bottleneck_kmeans_labels: str = option("pooled", "release", choices=("own", "pooled"), help=
        "K-means labels of the bottleneck term's one-hot q: its own K-means (own) or the pooled space's (pooled, "
        "released code)")
    forward_order: str = option("target_first", "release", choices=("target_first", "source_first"), help=
        "the order of an adaptation step's two forwards: the target batch first (released code) or the source batch "
        "first; the gradients are the same, BatchNorm's running statistics (which normalise the preparation pass) "
        "weigh the domain forwarded last more (docs/fidelity_notes.md)")
    # the adversarial baselines (srdc/methods/adversarial.py): the domain discriminator Linear-ReLU-Dropout x2 then
    # Linear (DANN's and CDAN's released code), its gradient reversed with coefficient lambda_p
    disc_hidden: int = option(1024, "adversarial", range=Range(1), help=
        "dann/cdan: width of the domain discriminator's two hidden layers")
    disc_dropout: float = option(0.5, "adversarial", range=Range(0, high=1), help=
        "dann/cdan: dropout of the domain discriminator's hidden layers")
    cdan_map: str = option("auto", "adversarial", choices=("auto", "multilinear", "randomized"), help=
        "cdan: the discriminator's input f (x) g, the full multilinear map or the randomized one; auto: randomized "
        "when d_f x K > 4096")
    cdan_random_dim: int = option(1024, "adversarial", range=Range(1), help=
        "cdan: dimension of the randomized multilinear map")
    cdan_entropy: bool = option(True, "adversarial", help=
        "cdan: weight the discriminator's samples by 1 + exp(-H(g)) (CDAN+E)")
    # model selection without target labels
    labelfree_selector: str = option("infomax", "selection", help=
        "the label-free validator that picks acc_labelfree's epoch (without target labels)")
    selection_epochs: str = option(SELECTION_EPOCHS[0], "selection", choices=SELECTION_EPOCHS, help=
        "the models a selection may pick: trained (after epochs 1..E) or release (before epochs 1..E, i.e. the "
        "untrained model and epochs 1..E-1: the released code evaluates before each epoch, never after the last)")
    inductive_oracle_ties: str = option(ORACLE_TIES[0], "selection", choices=ORACLE_TIES, help=
        "inductive: among epochs of equal best target-training-half accuracy, the oracle reports the highest "
        "test-half accuracy (release: the released code's cond_best_test_prec1) or the earliest epoch's (earliest)")
    # execution
    device: str = option("auto", "execution", choices=("auto", "cpu", "cuda"), identity=False, help=
        "auto: CUDA when available, else the CPU")
    num_workers: int = option(0, "execution", range=Range(0), identity=False, help=
        "data-loading worker processes (0: in the training process)")
    pin_memory: bool = option(False, "execution", identity=False, help=
        "page-locked image batches for faster copies to the GPU")
    bf16: bool | None = option(None, "execution", help=
        "bfloat16 autocast of the network: true, false (float32), or none = auto: on when the device is CUDA (never on"
        " a CPU); the run's summary records what ran (execution.precision)")
    channels_last: bool | None = option(None, "execution", help=
        "channels-last model and image batches: true, false, or none = auto: on when the device is CUDA; recorded in "
        "the summary (execution.channels_last)")
    eval_batch_size: int = option(256, "execution", range=Range(1), identity=False, help=
        "batch size of the preparation pass (inference only: features, K-means inputs, evaluation); larger is faster "
        "on a GPU, the features are the same up to float rounding")
    compile: bool = option(False, "execution", identity=False, help=
        "torch.compile the network (minutes of compilation at the start, faster epochs after: see "
        "benchmarks/gpu_throughput.py); checkpoints stay loadable either way")
    workers: int = option(1, "execution", range=Range(1), identity=False, help=
        "data-parallel worker processes of one srdc-train run on this machine, each on a slice of the global batch "
        "(gloo on a CPU, nccl and one GPU each on CUDA; README, --workers); 1: one process")
    batchnorm_sync: str = option("sync", "execution", choices=("sync", "per_device"), help=
        "BatchNorm with --workers above 1: statistics of the global batch (sync, as one worker) or of each worker's "
        "slice (per_device, as the released code's DataParallel; docs/fidelity_notes.md)")
    figures: bool = option(True, "execution", identity=False, help=
        "draw the run's figures at its end into OUT/figures (a study: the trial's folder and MLflow run): learning "
        "curves, confusion matrices, a t-SNE of the features, the source weights; never changes the training")
    figures_budget: float = option(0.25, "execution", range=Range(0), identity=False, help=
        "a study's trial draws its figures only where that takes at most this share of its training time (judged "
        "by the worker's last drawing; its first is always made); past it the trial keeps their record and "
        "srdc-report --sync draws them (the study's closing lines say how many): a smoke trial trains in half a "
        "second and draws in one, a real one trains for minutes")
    added: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task is not None:
            self.source, self.target = parse_task(self.task)
            self.task = None
        _refuse_unknown(set(self.added) - set(_ADDED))
        self.added = {name: self.added.get(name, declared.default) for name, declared in _ADDED.items()}
        for name, declared in options().items():
            declared.check(getattr(self, name))

    def __getattr__(self, name: str) -> Any:
        added = self.__dict__.get("added", {})
        if name in added:
            return added[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def uses_bf16(self, cuda: bool) -> bool:
        """bf16 autocast runs on CUDA only: there unless ``bf16`` is false, never on a CPU."""
        return cuda and _switch(self.bf16, True)

    def uses_channels_last(self, cuda: bool) -> bool:
        """Channels-last model and images: as ``channels_last`` says, else (auto) on CUDA only."""
        return _switch(self.channels_last, cuda)

    @property
    def task_name(self) -> str:
        return f"{self.source}->{self.target}"

    def to_dict(self) -> dict[str, Any]:
        """Every option's value, flat: ``{"dataset": ..., ..., "toy_pull_weight": ...}``."""
        return {name: getattr(self, name) for name in options()}

    def identity(self) -> dict[str, Any]:
        """The options that must match for a checkpoint to continue a run (not where or how fast it runs)."""
        return {name: value for name, value in self.to_dict().items() if options()[name].identity}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SRDCConfig:
        """Build from a flat dict such as a Tune trial config; unknown keys are an error, not silently dropped."""
        _refuse_unknown(set(values) - set(options()))
        built_in = {name: value for name, value in values.items() if name in _BUILT_IN}
        return cls(**built_in, added={name: value for name, value in values.items() if name in _ADDED})


def _refuse_unknown(names: set[str]) -> None:
    if names:
        raise SRDCInputError(f"unknown config field(s): {', '.join(sorted(names))}; known: "
                             f"{', '.join(sorted(options()))}")


def _switch(explicit: bool | None, default: bool) -> bool:
    return default if explicit is None else explicit


_BUILT_IN: dict[str, Option] = declared_options(SRDCConfig)


def default_of(name: str) -> Any:
    """The declared default of option ``name``."""
    return options()[name].default
