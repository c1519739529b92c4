"""``srdc-train``: one run from the command line.

Every option of :mod:`srdc.config` is an option under its own name (``--lambda_scale 0.5``; dashes work too:
``--data-root``), listed by group in ``--help``. Writes ``OUT/summary.json``, ``OUT/history.jsonl`` and
``OUT/checkpoint.pt`` after every epoch, and the run's figures into ``OUT/figures`` at its end (unless ``--figures
false``); ``--resume`` continues from the checkpoint in OUT, bit for bit (``--resume-or-start``: continue it, or start
the run when OUT holds no checkpoint). One process at a time owns OUT (:class:`srdc.runio.RunLock`). ``--workers N``
trains the run on N data-parallel worker processes (:mod:`srdc.parallel`); rank 0 prints and writes OUT, the others
write nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from srdc.base import THREADS_HELP, ArgumentParser, resolve_device, run_main, set_torch_threads
from srdc.config import Option, SRDCConfig, groups, options
from srdc.errors import SRDCInputError
from srdc.figures.trial import write_trial_figures
from srdc.methods import METHODS
from srdc.runio import RunLock, read_checkpoint, save_run
from srdc.trialfiles import CHECKPOINT, FIGURES_DIR, HISTORY, SUMMARY, read_json
from srdc.validators import VALIDATORS

if TYPE_CHECKING:
    from srdc.parallel import Group

# fields whose values are registry names: the registered methods and label-free validators
REGISTRY_CHOICES = {registry.kind: registry for registry in (METHODS, VALIDATORS)}
# what a trained epoch's progress line adds (history key, label, format); epoch 0, before training, has none of them
TRAINING_COLUMNS = (("loss_total", "loss", ".4f"), ("lr", "lr", ".5f"), ("lambda", "lambda", ".3f"))


def parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _converter(annotation: str) -> Any:
    """A string -> value converter for a dataclass field annotation such as ``int | None``."""
    optional = "None" in annotation
    base = annotation.replace("| None", "").strip()
    convert = {"bool": parse_bool, "int": int, "float": float, "str": str}[base]

    def parse(text: str) -> Any:
        if optional and text.lower() == "none":
            return None
        return convert(text)

    parse.__name__ = base
    return parse


def run_folder(text: str) -> Path:
    """``--out``: a folder path; an empty one (which would train into the current folder) is refused."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty; give the run's folder, e.g. --out runs/a2w (or leave --out out)")
    return Path(text)


def build_parser() -> argparse.ArgumentParser:
    """``srdc-train``'s options: --out, --resume / --resume-or-start, --quiet, then every config field under its
    group's title."""
    parser = ArgumentParser(
        prog="srdc-train",
        description="Train SRDC (or a baseline/ablation variant) on one source->target task.",
    )
    parser.add_argument("--out", type=run_folder, default=None,
                        help="run directory (default: outputs/DATASET/SOURCE_to_TARGET/VARIANT/seedN)")
    resume = parser.add_mutually_exclusive_group()
    resume.add_argument("--resume", action="store_true",
                        help="continue the run whose checkpoint is in --out (an error when there is none)")
    resume.add_argument("--resume-or-start", "--resume_or_start", dest="resume_or_start", action="store_true",
                        help="continue the run in --out, or start it when --out holds no checkpoint (for scripts)")
    parser.add_argument("--quiet", action="store_true", help="no per-iteration progress bar")
    parser.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    sections = {group: parser.add_argument_group(title) for group, title in groups().items()}
    for declared in options().values():
        names = [f"--{declared.name}"]
        if "_" in declared.name:
            names.append(f"--{declared.name.replace('_', '-')}")
        sections[declared.group].add_argument(*names, dest=declared.name, type=_converter(declared.type),
                                              default=declared.default, choices=_choices(declared),
                                              help=f"{declared.help} (default: {declared.default})")
    return parser


def _choices(declared: Option) -> list[str] | None:
    if declared.name in REGISTRY_CHOICES:
        return list(REGISTRY_CHOICES[declared.name])
    return list(declared.choices) if declared.choices is not None else None


def config_from_args(args: argparse.Namespace) -> SRDCConfig:
    return SRDCConfig.from_dict({name: getattr(args, name) for name in options()})


def default_out(config: SRDCConfig) -> Path:
    safe = lambda name: Path(name).stem if ("/" in name or "." in name) else name  # noqa: E731
    return Path("outputs") / config.dataset / f"{safe(config.source)}_to_{safe(config.target)}" / \
        config.variant / f"seed{config.seed}"


def format_row(row: dict[str, Any], epochs: int) -> str:
    """One history row as a progress line: accuracies, the validators, and what exists of loss, lr and lambda (a
    trained epoch's; never a placeholder)."""
    parts = [f"epoch {row['epoch']:>3}/{epochs}", f"acc_target {row['acc_target']:6.2f}"]
    if "acc_target_test" in row:
        parts.append(f"test {row['acc_target_test']:.2f}")
    if "acc_kmeans_pooled" in row:
        parts.append(f"kmeans {row['acc_kmeans_pooled']:6.2f}")
    parts += [f"{validator.metric} {row[validator.metric]:.3f}" for validator in VALIDATORS.values()
              if validator.metric in row]
    parts += [f"{label} {row[key]:{spec}}" for key, label, spec in TRAINING_COLUMNS if key in row]
    parts.append(f"{row['wall_s_epoch']:.1f}s")
    return "  ".join(parts)


def checkpoint_to_resume(out: Path, resume: bool, or_start: bool) -> dict[str, Any] | None:
    """The checkpoint state the run in ``out`` continues from, or ``None`` to start it; errors for a run that
    exists without ``resume``/``or_start`` and for ``resume`` without a checkpoint."""
    has_checkpoint = (out / CHECKPOINT).is_file()
    if has_checkpoint and not (resume or or_start):
        raise SRDCInputError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")
    if resume and not has_checkpoint:
        raise SRDCInputError(f"--resume: no checkpoint at {out / CHECKPOINT} (wrong --out, or the run stopped before "
                             f"its first save); drop --resume to start the run, or pass --resume-or-start")
    return read_checkpoint(out) if has_checkpoint else None


def run(config: SRDCConfig, out: Path, resume: bool, progress: bool, or_start: bool = False,
        threads: str = "") -> dict[str, Any]:
    """Train (or continue) the run in ``out``, holding its lock; returns its summary. ``threads`` (``srdc-train``:
    the line :func:`srdc.base.set_torch_threads` returned) ends the run's header line, printed once its inputs and
    checkpoint are checked, so that bad input stays one line; the line names the backbone and why (``auto``: the
    dataset's default, or for your own images their size). The backbone's weights are found before the data is
    loaded: no network or a missing weights file is reported before any image is decoded. With ``workers`` above 1
    the run's N worker processes train it (each reads the checkpoint), and the summary is the one rank 0 wrote."""
    with RunLock(out):
        state = checkpoint_to_resume(out, resume, or_start)
        if config.workers == 1:
            return _run_locked(config, out, state, progress, threads)
        from srdc.parallel import launch  # here: srdc-train --help imports no torch

        launch(config.workers, _run_rank, (config, out, state is not None, progress, threads),
               cuda=resolve_device(config.device).type == "cuda")
        return read_json(out / SUMMARY) or {}


def _run_rank(group: Group, config: SRDCConfig, out: Path, resumed: bool, progress: bool, threads: str) -> None:
    """One worker of a ``--workers N`` run: the run from the checkpoint in ``out`` when ``resumed``."""
    _run_locked(config, out, read_checkpoint(out) if resumed else None, progress and group.leader, threads, group)


def _run_locked(config: SRDCConfig, out: Path, state: dict[str, Any] | None, progress: bool,
                threads: str, group: Group | None = None) -> dict[str, Any]:
    from srdc.data import load_task
    from srdc.figures.recorder import recorder_for
    from srdc.trainer import Trainer, check_backbone

    leader = group is None or group.leader
    say = (lambda line: print(line, file=sys.stderr)) if leader else (lambda line: None)
    backbone = check_backbone(config)
    recorder = recorder_for(config) if leader else None
    trainer = Trainer(config, load_task(config), progress=progress, observers=[recorder] if recorder else [],
                      group=group)
    if state is not None:
        trainer.load_state_dict(state)
        say(f"resumed {out} at epoch {trainer.epoch}/{config.epochs}")
    say(f"{config.dataset} {config.task_name} variant={config.variant} seed={config.seed} device={trainer.device} "
        f"backbone={backbone.name} ({backbone.reason}) source={len(trainer.task.source)} "
        f"target={len(trainer.task.target)} out={out}" + (f"; {threads}" if threads else "")
        + (f"; {config.workers} workers" if group is not None else ""))
    say(f"transforms: {trainer.task.source.transform}")
    trainer.initialise()
    if trainer.epoch == 0:
        say(format_row(trainer.history[0], config.epochs))
    if leader:
        save_run(out, trainer)

    def on_epoch(trainer: Trainer, row: dict[str, Any]) -> None:
        say(format_row(row, config.epochs))
        if leader:
            save_run(out, trainer)

    summary = trainer.fit(on_epoch)
    if recorder is not None:
        write_trial_figures(recorder.trial_record(trainer.history, trainer.task.source), out / FIGURES_DIR)
    return summary


def train(argv: list[str] | None = None) -> int:
    """Parse, train, print the three accuracies; errors propagate to :func:`main`."""
    args = build_parser().parse_args(argv)
    threads = set_torch_threads(args.threads)
    config = config_from_args(args)
    out = args.out or default_out(config)
    summary = run(config, out, args.resume, progress=not args.quiet, or_start=args.resume_or_start,
                  threads=threads)
    print(f"acc_last {summary['acc_last']:.2f}  acc_best_oracle {summary['acc_best_oracle']:.2f} "
          f"(epoch {summary['best_oracle_epoch']}, selected with target labels)  acc_labelfree "
          f"{summary['acc_labelfree']:.2f} (epoch {summary['labelfree_epoch']}, {summary['labelfree_selector']})")
    figures = f" and the figures in {out / FIGURES_DIR}" if config.figures else ""
    print(f"wrote {out}/{SUMMARY}, {out}/{HISTORY}{figures}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``srdc-train``: bad input is one line and exit 2, a diverged run one line and exit 1."""
    return run_main(lambda: train(argv))


if __name__ == "__main__":
    sys.exit(main())
