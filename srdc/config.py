"""Every hyper-parameter of an SRDC run, with the paper's defaults (Section 5.1, Appendix A).

The same field names are used on the command line (``--field value``) and in a Ray Tune ``param_space``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from srdc.base import parse_task
from srdc.errors import SRDCInputError

# the paper's variants, in the order of its Table 1 (reports and studies list them so); which variants can run
# is the method registry's business (srdc.methods.METHODS), which sits above this module
VARIANTS = ("source_only", "srdc_no_struct", "srdc_no_featdisc", "srdc_no_softsel", "srdc", "oracle")
# other methods of the paper's comparison tables, run through the same method seam: DANN [16] and CDAN+E [35]
BASELINES = ("dann", "cdan")

# variant -> (structural_source_reg, feature_discrimination, soft_source_selection, target_clustering)
_VARIANT_SWITCHES: dict[str, tuple[bool, bool, bool, bool]] = {
    "source_only": (True, False, False, False),
    "srdc_no_struct": (False, True, False, True),
    "srdc_no_featdisc": (True, False, True, True),
    "srdc_no_softsel": (True, True, False, True),
    "srdc": (True, True, True, True),
    "oracle": (False, False, False, False),
}
# a variant outside the paper's (a method added to the registry) has none of SRDC's components unless set
_NO_SWITCHES = (False, False, False, False)

# fields with a fixed set of values; ``variant`` and ``labelfree_selector`` are checked against their registries
# (srdc.methods, srdc.validators) where a run is built
CHOICES: dict[str, tuple[str, ...]] = {
    "setting": ("transductive", "inductive"),
    "feature_spaces": ("both", "pooled", "bottleneck"),
    "loss_weighting": ("code", "paper"),
    "aux_normalizer": ("batch", "dataset"),
    "feature_kernel": ("paper", "student_t"),
    "mu_init": ("mean", "target"),
    "device": ("auto", "cpu", "cuda"),
    "cdan_map": ("auto", "multilinear", "randomized"),
    "feature_norm": ("none", "l2", "zscore", "l1_zscore"),
    "augment": ("auto", "flip_crop", "crop", "none"),
    "normalize": ("auto", "imagenet", "half", "none"),
    "schedule_unit": ("epoch", "iteration"),
    "prep_batchnorm": ("running", "domain"),
    "bottleneck_kmeans_labels": ("own", "pooled"),
    "kmeans_labels": ("final", "before_update"),
    "empty_centre": ("source", "zero"),
    "first_epoch_targets": ("kmeans", "predictions"),
}


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


# numeric fields and their ranges; a field whose annotation allows None may also be None (its default meaning)
RANGES: dict[str, Range] = {
    "split_seed": Range(0),
    "seed": Range(0, high=2**32),  # numpy's seeds
    "epochs": Range(1),
    "source_pretrain_epochs": Range(0),
    "bottleneck_dim": Range(1),
    "batch_size": Range(2),
    "lr": Range(0, low_open=True),
    "backbone_lr_mult": Range(0),
    "centres_lr_mult": Range(0),
    "momentum": Range(0, high=1),
    "weight_decay": Range(0),
    "lr_alpha": Range(0),
    "lr_beta": Range(0),
    "lambda_gamma": Range(0),
    "lambda_scale": Range(0),
    "kmeans_iters": Range(1),
    "kmeans_chunk": Range(1),
    "num_workers": Range(0),
    "image_size": Range(8),
    "max_samples": Range(1),
    "eval_batch_size": Range(1),
    "disc_hidden": Range(1),
    "disc_dropout": Range(0, high=1),
    "cdan_random_dim": Range(1),
    "aux_kmeans_weight": Range(0, high=1),
}

# what ``srdc-train --help`` says of each field beyond its default (tests/test_help_texts.py: every field has one)
HELP: dict[str, str] = {
    # what to train on
    "dataset": "the dataset (srdc-data list): embedded, digits, office31, imageclef, officehome, folder, imagelist, "
               "features",
    "source": "the source domain (labelled)",
    "target": "the target domain (its labels are used for evaluation only, and by the oracle)",
    "task": "SOURCE->TARGET in one option (e.g. A->W); sets --source and --target",
    "data_root": "the folder holding the datasets (docs/datasets.md)",
    "setting": "transductive: train and evaluate on the whole target domain; inductive: train on half of it, also "
               "report the other half (acc_target_test)",
    "split_seed": "the seed of the inductive 50/50 split and of --max_samples' subset",
    "path_prefix": "OLD=NEW: rewrite absolute paths in image lists (docs/datasets.md)",
    "classes_file": "class names, one per line, for --dataset imagelist or features",
    "feature_norm": "--dataset features: how each domain's features are preprocessed, with the domain's own "
                    "statistics (docs/datasets.md)",
    # what to train
    "variant": "the method: SRDC, an ablation row of Table 1, source-only, the oracle, or a baseline (README)",
    "seed": "the seed of the network's initialisation, the mini-batch order and every other random draw",
    "epochs": "training epochs (the paper's 200); lr and lambda follow p = epoch / epochs",
    "structural_source_reg": "structural source regularisation, eqs. (10)/(13)/(14): true, false, or none = as the "
                             "variant says",
    "feature_discrimination": "target clustering in the feature spaces with the centres mu, eqs. (4)/(9): true, "
                              "false, or none = as the variant says",
    "soft_source_selection": "source samples weighted by their similarity to the target centres, eq. (12): true, "
                             "false, or none = as the variant says",
    "source_pretrain_epochs": "source-only epochs before target clustering; none: a tenth of --epochs (at least "
                              "1) without structural source regularisation (srdc_no_struct), 0 with it (srdc)",
    # model
    "backbone": "the feature extractor: resnet18/34/50/101, digits_cnn, or identity (--dataset features); auto: "
                "the dataset's default (ResNet-50 for the image benchmarks, the digits CNN for digits)",
    "weights": "the backbone's initial weights: imagenet, none (random), or a .pth file",
    "bottleneck_dim": "width of the bottleneck layer after the backbone (Appendix A)",
    "feature_spaces": "the feature spaces clustered with centres mu: the pooled backbone features, the bottleneck, "
                      "or both (Appendix A)",
    # optimisation
    "batch_size": "mini-batch size of each domain: a step draws one source and one target batch",
    "lr": "learning rate lr_0 of the new layers, decayed as lr_p = lr_0 / (1 + lr_alpha p)^lr_beta",
    "backbone_lr_mult": "the backbone's learning rate as a multiple of --lr; none: 0.1 for a pretrained backbone, 1 "
                        "for one trained from scratch",
    "centres_lr_mult": "the centres mu's learning rate as a multiple of --lr",
    "momentum": "SGD momentum",
    "weight_decay": "SGD weight decay",
    "lr_alpha": "alpha of lr_p = lr_0 / (1 + alpha p)^beta",
    "lr_beta": "beta of lr_p = lr_0 / (1 + alpha p)^beta",
    "lambda_gamma": "gamma of lambda_p = scale (2 / (1 + exp(-gamma p)) - 1), the weight ramp of eq. (11)",
    "lambda_scale": "scale of lambda_p = scale (2 / (1 + exp(-gamma p)) - 1)",
    "schedule_unit": "when lr_p and lambda_p step: once per epoch (released code; lambda is 0 in the first epoch) or "
                     "at every iteration",
    "prep_batchnorm": "BatchNorm statistics of the preparation pass (the features K-means, the centres, the source "
                      "weights and the evaluation use): running (training's running averages over both domains, "
                      "released code) or domain (each domain's own, gathered by one extra pass over it each epoch: "
                      "AdaBN; a held-out target split takes the target training set's)",
    # clustering
    "kmeans_iters": "K-means iterations in each preparation pass (Appendix A)",
    "kmeans_chunk": "samples per chunk of K-means' distance computation (memory, not results)",
    "mu_init": "the centres mu at each epoch: mean of the source and target K-means centres (mean), or the target's "
               "alone (target, the released code's choice when the target is amazon)",
    # where the paper's text and the released code differ (docs/fidelity_notes.md)
    "loss_weighting": "eq. (11): code = lambda L_t + L_s_out + lambda L_s_feat (released code), paper = L_t + "
                      "lambda (L_s_out + L_s_feat) (docs/fidelity_notes.md item 1)",
    "aux_normalizer": "the column sums of eq. (2) over the mini-batch (batch, released code) or the whole target set "
                      "(dataset, paper text)",
    "aux_grad": "gradients flow through the auxiliary distribution q (true, released code) or q is fixed (false, "
                "the paper's alternating optimisation)",
    "feature_kernel": "soft assignment of eqs. (4)/(9): as printed (paper) or DEC's Student-t (student_t)",
    # the adversarial baselines
    "disc_hidden": "dann/cdan: width of the domain discriminator's two hidden layers",
    "disc_dropout": "dann/cdan: dropout of the domain discriminator's hidden layers",
    "cdan_map": "cdan: the discriminator's input f (x) g, the full multilinear map or the randomized one; auto: "
                "randomized when d_f x K > 4096",
    "cdan_random_dim": "cdan: dimension of the randomized multilinear map",
    "cdan_entropy": "cdan: weight the discriminator's samples by 1 + exp(-H(g)) (CDAN+E)",
    # model selection
    "labelfree_selector": "the label-free validator that picks acc_labelfree's epoch (without target labels)",
    # execution
    "device": "auto: CUDA when available, else the CPU",
    "num_workers": "data-loading worker processes (0: in the training process)",
    "pin_memory": "page-locked image batches for faster copies to the GPU",
    "image_size": "the network's input size in pixels; none: the backbone's (224 for ResNets, 28 for the digits "
                  "CNN)",
    "augment": "training augmentation of image datasets; auto: the backbone's profile (flip and crop for ResNets, "
               "none for digits)",
    "normalize": "input normalisation of image datasets; auto: the backbone's profile (ImageNet statistics for "
                 "ResNets, mean/std 0.5 for digits)",
    "image_cache": "image datasets: decode each image once into a memory-mapped cache (the same tensors as "
                   "decoding the files): auto ($SRDC_CACHE_DIR, else DATA_ROOT/.srdc-cache for a benchmark with a "
                   "writable data root, else ~/.cache/srdc), a folder, or off (decode at every access)",
    "max_samples": "at most this many samples a domain, a stratified subsample (quick runs, smoke tests); none: all",
    "bf16": "bfloat16 autocast of the network: true, false (float32), or none = auto: on when the device is CUDA "
            "(never on a CPU); the run's summary records what ran (execution.precision)",
    "channels_last": "channels-last model and image batches: true, false, or none = auto: on when the device is "
                     "CUDA; recorded in the summary (execution.channels_last)",
    "eval_batch_size": "batch size of the preparation pass (inference only: features, K-means inputs, evaluation); "
                       "larger is faster on a GPU, the features are the same up to float rounding",
    "compile": "torch.compile the network (minutes of compilation at the start, faster epochs after: see "
               "benchmarks/gpu_throughput.py); checkpoints stay loadable either way",
    "figures": "draw the run's figures at its end into OUT/figures (a study: the trial's folder and MLflow run): "
               "learning curves, confusion matrices, a t-SNE of the features, the source weights; never changes "
               "the training",
    # the released code's behaviour where it differs from ours (docs/fidelity_notes.md items 22-26)
    "centre_grad_accumulate": "never zero the centres mu's gradients (released code; false: zero them every step): "
                              "each step's SGD sees the sum of all past gradients plus every step's weight decay "
                              "(PyTorch 1.1 adds it to .grad)",
    "aux_kmeans_weight": "w in q = w onehot(K-means labels) + (1 - w) Q (eq. 2) after the first epoch, in every "
                         "space; the released code uses 0.5 for webcam->amazon (its beta = 1 - w)",
    "bottleneck_kmeans_labels": "K-means labels of the bottleneck term's one-hot q: its own K-means (own) or the "
                                "pooled space's (pooled, released code)",
    "kmeans_labels": "K-means labels: the assignment to the final centres (final) or the last iteration's, made "
                     "before its centre update (before_update, released code)",
    "first_epoch_targets": "the one-hot q of the first clustering epoch (Algorithm 1, line 1): the pooled-space "
                           "K-means labels (kmeans, the paper's) or the classifier's predictions of the preparation "
                           "pass (predictions: for a source warm-up, --source_pretrain_epochs; "
                           "docs/fidelity_notes.md, large gap)",
    "empty_centre": "a class nobody predicts starts K-means from its source centroid and an empty cluster keeps its "
                    "centre (source), or both get a zero centre (zero, released code: mu = c_s/2, w = 0.5)",
}


@dataclass
class SRDCConfig:
    """One run. Defaults are the paper's (and the released code's where the text is silent).

    ``structural_source_reg``, ``feature_discrimination`` and ``soft_source_selection`` default to
    ``None``: the variant decides them; set one explicitly to override the variant (full factorial).
    """

    # what to train on
    dataset: str = "embedded"
    source: str = "digits"
    target: str = "digits_photo"
    task: str | None = None
    data_root: str = "data"
    setting: str = "transductive"
    split_seed: int = 0
    path_prefix: str | None = None  # OLD=NEW: rewrite absolute paths in image lists (docs/datasets.md)
    classes_file: str | None = None  # class names, one per line, for --dataset imagelist / features
    feature_norm: str = "zscore"  # --dataset features: each domain's own preprocessing (docs/datasets.md)
    # what to train
    variant: str = "srdc"
    seed: int = 0
    epochs: int = 200
    structural_source_reg: bool | None = None
    feature_discrimination: bool | None = None
    soft_source_selection: bool | None = None
    source_pretrain_epochs: int | None = None
    # model (Appendix A)
    backbone: str = "auto"
    weights: str = "imagenet"
    bottleneck_dim: int = 512
    feature_spaces: str = "both"
    # optimisation (Section 5.1, Appendix A)
    batch_size: int = 64
    lr: float = 0.01
    backbone_lr_mult: float | None = None
    centres_lr_mult: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_alpha: float = 10.0
    lr_beta: float = 0.75
    lambda_gamma: float = 10.0
    lambda_scale: float = 1.0
    schedule_unit: str = "epoch"  # lr and lambda step once per epoch (released code) or every iteration
    prep_batchnorm: str = "running"  # docs/fidelity_notes.md item 27
    # clustering (Appendix A, released code)
    kmeans_iters: int = 5
    kmeans_chunk: int = 4096
    mu_init: str = "mean"
    # where the paper's text and the released code differ (docs/fidelity_notes.md)
    loss_weighting: str = "code"
    aux_normalizer: str = "batch"
    aux_grad: bool = True
    feature_kernel: str = "paper"
    # where the released code departs from the paper's text (docs/fidelity_notes.md items 22-26, HELP): defaults are
    # the release's, measured harmless on the digits; aux_kmeans_weight is 0 but where a study sets the release's
    # W->A value (srdc.harness.declarations.office31_task_config)
    centre_grad_accumulate: bool = True
    aux_kmeans_weight: float = 0.0
    bottleneck_kmeans_labels: str = "pooled"
    kmeans_labels: str = "before_update"
    empty_centre: str = "zero"
    # not the paper's: first-epoch targets from a warmed-up classifier (docs/fidelity_notes.md, large gap)
    first_epoch_targets: str = "kmeans"
    # the adversarial baselines (variants dann, cdan; srdc/methods/adversarial.py): the domain discriminator
    # Linear-ReLU-Dropout x2 then Linear (DANN's and CDAN's released code), its gradient reversed with
    # coefficient lambda_p (lambda_gamma, lambda_scale above); CDAN's conditioning f (x) g is the full multilinear
    # map, or the randomized one of dimension cdan_random_dim ("auto": randomized when d_f x K > 4096, CDAN
    # Section 3.1), with entropy weights w = 1 + exp(-H(g)) (CDAN+E) when cdan_entropy
    disc_hidden: int = 1024
    disc_dropout: float = 0.5
    cdan_map: str = "auto"
    cdan_random_dim: int = 1024
    cdan_entropy: bool = True
    # model selection without target labels
    labelfree_selector: str = "infomax"
    # execution
    device: str = "auto"
    num_workers: int = 0
    pin_memory: bool = False
    bf16: bool | None = None  # None: auto, on when the device is CUDA (HELP)
    channels_last: bool | None = None
    eval_batch_size: int = 256
    compile: bool = False
    image_size: int | None = None
    augment: str = "auto"  # image datasets: the backbone's transform profile unless set (srdc.data.images)
    normalize: str = "auto"
    # image datasets: decode each image once into a memory-mapped cache (srdc.data.decoded): off, auto or a folder
    image_cache: str = "auto"
    max_samples: int | None = None
    # at the run's end: learning curves, confusion matrices, t-SNE, source weights as PNGs (srdc.figures)
    figures: bool = True

    def __post_init__(self) -> None:
        if self.task is not None:
            self.source, self.target = parse_task(self.task)
            self.task = None
        for name, allowed in CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise SRDCInputError(
                    f"unknown {name} {value!r}; choose one of: {', '.join(allowed)}"
                )
        for name, allowed in RANGES.items():
            _check_range(name, getattr(self, name), allowed)

    @property
    def _variant_switches(self) -> tuple[bool, bool, bool, bool]:
        return _VARIANT_SWITCHES.get(self.variant, _NO_SWITCHES)

    @property
    def uses_structural_source_reg(self) -> bool:
        return _switch(self.structural_source_reg, self._variant_switches[0])

    @property
    def uses_feature_discrimination(self) -> bool:
        return _switch(self.feature_discrimination, self._variant_switches[1])

    @property
    def uses_soft_source_selection(self) -> bool:
        return _switch(self.soft_source_selection, self._variant_switches[2])

    @property
    def uses_target_clustering(self) -> bool:
        return self._variant_switches[3]

    def uses_bf16(self, cuda: bool) -> bool:
        """bf16 autocast runs on CUDA only: there unless ``bf16`` is false, never on a CPU."""
        return cuda and _switch(self.bf16, True)

    def uses_channels_last(self, cuda: bool) -> bool:
        """Channels-last model and images: as ``channels_last`` says, else (auto) on CUDA only."""
        return _switch(self.channels_last, cuda)

    @property
    def pretrain_epochs(self) -> int:
        """Source-only epochs before target clustering: ``source_pretrain_epochs`` when set (at most all epochs but
        one); unset, a tenth of the epochs (at least 1) without structural source regularisation (variant
        ``srdc_no_struct``, or the switch turned off in a factorial), none with it (the paper's SRDC)."""
        if not self.uses_target_clustering:
            return 0
        if self.source_pretrain_epochs is not None:
            return min(self.source_pretrain_epochs, self.epochs - 1)
        return 0 if self.uses_structural_source_reg else max(1, self.epochs // 10)

    @property
    def task_name(self) -> str:
        return f"{self.source}->{self.target}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SRDCConfig:
        """Build from a dict such as a Tune trial config; unknown keys are an error, not silently dropped."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise SRDCInputError(f"unknown config field(s): {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        return cls(**values)


def _check_range(name: str, value: Any, allowed: Range) -> None:
    """Raise :class:`SRDCInputError` naming ``name`` unless ``value`` is a finite number of the field's type
    (an integer for an ``int`` field) in ``allowed``, or ``None`` where the field allows it."""
    annotation = str(SRDCConfig.__dataclass_fields__[name].type)
    optional, integer = "None" in annotation, annotation.startswith("int")
    if value is None and optional:
        return
    typed = not isinstance(value, bool) and isinstance(value, int if integer else int | float)
    finite = typed and math.isfinite(value)
    if not finite or not allowed.contains(value):
        kind = "" if finite else ("an integer " if integer else "a finite number ")
        none = " or None" if optional else ""
        raise SRDCInputError(f"{name} must be {kind}{allowed.describe()}{none}, got {value!r}")


def _switch(explicit: bool | None, from_variant: bool) -> bool:
    return from_variant if explicit is None else explicit


def config_fields() -> list[dataclasses.Field]:
    return list(dataclasses.fields(SRDCConfig))
