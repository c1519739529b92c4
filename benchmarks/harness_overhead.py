"""What the study harness costs: one trial run bare (``srdc-train``'s loop, in this process) and under the harness
(Ray Tune trial + the MLflow callback) with a checkpoint every epoch and every ``--checkpoint-every`` epochs, wall
times and their ratios, in one run. Prints figures; asserts nothing. Target: harness / bare <= 1.01 for a trial of
60 epochs.

    python benchmarks/harness_overhead.py                                 # embedded data, CPU, ~1-minute trial
    python benchmarks/harness_overhead.py --gpus 1 --epochs 10 --set device=cuda --set backbone=resnet50 \\
        --set weights=none --set image_size=224                           # ResNet-50 checkpoints on a GPU

The bare run uses as many CPU threads as the trial gets CPUs. The harness figures: the whole ``run_study`` call
(Tune loop, the trial's worker start, MLflow) and the trial itself (Tune's ``time_total_s``: from the trainable's
start to its last report). Starting Ray is timed apart: it happens once per study.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
import torch

from srdc.cli import run
from srdc.config import SRDCConfig
from srdc.harness.declarations import Study
from srdc.harness.options import parse_overrides, resolve_launch
from srdc.harness.outcome import run_study
from srdc.trialfiles import RESULT_FILE


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="embedded")
    parser.add_argument("--task", default="digits->digits_photo")
    parser.add_argument("--variant", default="srdc")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--cpus", type=int, default=1, help="CPUs per trial (and threads of the bare run)")
    parser.add_argument("--gpus", type=float, default=0.0, help="GPUs per trial")
    parser.add_argument("--tracking-uri", default=None, help="(default: a SQLite file in a temporary folder)")
    parser.add_argument("--checkpoint-every", type=int, default=10, metavar="K",
                        help="the second harness run checkpoints every K epochs (default: 10)")
    return parser.parse_args()


def timed(action: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    value = action()
    return value, time.perf_counter() - start


def main() -> None:
    args = parse_args()
    fields = {"epochs": args.epochs, **parse_overrides(args.overrides)}
    config = SRDCConfig(dataset=args.dataset, task=args.task, variant=args.variant, **fields)
    torch.set_num_threads(args.cpus)
    with tempfile.TemporaryDirectory(prefix="harness-overhead-") as folder:
        work = Path(folder)
        summary, bare_s = timed(lambda: run(config, work / "bare", resume=False, progress=False))
        _, ray_s = timed(lambda: ray.init(num_cpus=args.cpus))
        runs = {every: harness_run(args, fields, work, every) for every in (1, args.checkpoint_every)}
        ray.shutdown()
    print(f"trial: {config.dataset} {config.task_name} {config.variant}, {config.epochs} epochs, "
          f"{args.cpus} CPU(s), {args.gpus} GPU(s)")
    print(f"bare (srdc-train loop, saves every epoch)              {bare_s:8.1f} s")
    for every, (record, trial_s, harness_s) in runs.items():
        same = record["acc_last"] == summary["acc_last"]
        print(f"harness, --checkpoint-every {every:<3}: the trial (Tune)  {trial_s:8.1f} s   ratio "
              f"{trial_s / bare_s:.3f}   (same final accuracy as bare: {same})")
        print(f"harness, --checkpoint-every {every:<3}: run_study         {harness_s:8.1f} s   ratio "
              f"{harness_s / bare_s:.3f}")
    print(f"ray.init (once per study)                              {ray_s:8.1f} s")


def harness_run(args: argparse.Namespace, fields: dict[str, Any], work: Path,
                every: int) -> tuple[dict[str, Any], float, float]:
    """The trial under the harness checkpointing every ``every`` epochs: its record, the trial's time (Tune's
    ``time_total_s``) and the whole ``run_study`` call's."""
    study = Study(name=f"harness_overhead_{every}", dataset=args.dataset, tasks=(args.task,),
                  variants=(args.variant,), seeds=(0,), config=fields, smoke=None)
    argv = ["--storage-path", str(work / "ray"), "--experiment", "harness_overhead", "--tracking-uri",
            args.tracking_uri or f"sqlite:///{work / 'mlflow.db'}", "--cpus-per-trial", str(args.cpus),
            "--gpus-per-trial", str(args.gpus), "--checkpoint-every", str(every)]
    outcome, harness_s = timed(lambda: run_study(study, resolve_launch(study, argv)))
    (record,) = outcome.records
    last = json.loads((Path(record["path"]) / RESULT_FILE).read_text().splitlines()[-1])
    return record, last["time_total_s"], harness_s


if __name__ == "__main__":
    main()
