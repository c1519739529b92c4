"""Where an SRDC epoch's time goes, and what K-means costs in memory. Prints figures; asserts nothing.

1. Per-epoch wall time split into training steps / preparation pass / K-means / evaluation, for source-only
   and SRDC on the same data in the same process, and the ratio SRDC epoch / source-only epoch.
2. Peak memory of K-means for N=50,000, d=2048, K=31 (CUDA: peak allocated; CPU: peak RSS growth), beside
   the N x K x d tensor a naive implementation would build.
3. With ``--write_costs [PATH]``: the row of the per-epoch cost table that ``--dry-run`` plans with
   (``srdc/harness/epoch_costs.json`` unless PATH; see ``srdc/harness/costs.py``): the cost of a source-only
   iteration (one batch), of an SRDC iteration (a source and a target batch) and of the preparation pass per
   image, keyed by backbone x image size x batch size x dtype x device, with the command, machine and date.
   A row with the same key is replaced.

    python benchmarks/epoch_breakdown.py                                  # embedded data, CPU
    python benchmarks/epoch_breakdown.py --dataset digits --data_root ../shared/data --source usps --target mnist
    python benchmarks/epoch_breakdown.py --dataset synthetic --backbone resnet50 --device cuda --bf16 true \
        --channels_last true                                              # ImageNet-sized images on a GPU
    python benchmarks/epoch_breakdown.py --dataset synthetic --backbone resnet50 --device cuda --write_costs
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from srdc.base import resolve_device
from srdc.cli import parse_bool
from srdc.clustering import kmeans
from srdc.config import SRDCConfig
from srdc.data import TaskData, load_task
from srdc.data.base import domain_facts, tensor_domain
from srdc.harness.costs import COSTS_FILE, CPU, CostKey, CostRow, dtype_name, input_size, merge_row
from srdc.trainer import Trainer

PARTS = ("time_train_s", "time_prepare_s", "time_kmeans_s", "time_eval_s", "time_observers_s", "wall_s_epoch")
VARIANTS = ("source_only", "srdc")  # one batch per iteration, then a source and a target batch


def synthetic_task(source_size: int, target_size: int, classes: int, image_size: int) -> TaskData:
    """Random images (by default ImageNet-sized, Office-31 scale: dslr -> webcam sized domains), in memory."""
    generator = torch.Generator().manual_seed(0)

    def domain(name: str, size: int):
        images = torch.randn(size, 3, image_size, image_size, generator=generator)
        return tensor_domain(name, [str(c) for c in range(classes)], images, torch.arange(size) % classes)

    return TaskData(domain("source", source_size), domain("target", target_size), None, "resnet50")


def epoch_rows(config: SRDCConfig, task: TaskData) -> list[dict[str, Any]]:
    """The history rows of the run's training epochs (row 0 is the pass over the untrained model)."""
    trainer = Trainer(config, task)
    trainer.fit()
    return trainer.history[1:]


def medians(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Median of each time part over the epochs' rows."""
    return {part: statistics.median(row[part] for row in rows) for part in PARTS}


def kmeans_peak_memory(n: int, d: int, k: int, device: torch.device) -> tuple[float, float]:
    """Extra peak memory (MiB) of K-means over the features themselves, and its wall time (s)."""
    features = torch.randn(n, d, device=device)
    init = features[:k].clone()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
    else:
        baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    kmeans(features, init, iterations=5)
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - baseline
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline
    return peak / 2**20, time.perf_counter() - start


def machine(device: torch.device) -> str:
    """The processor (and GPU), the cores, the torch threads and the load when the measurement started."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    gpu = f"{torch.cuda.get_device_name(device)}, " if device.type == "cuda" else ""
    load = f", load average {os.getloadavg()[0]:.1f} at the start" if hasattr(os, "getloadavg") else ""
    return (f"{gpu}{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch thread(s){load}; "
            f"{platform.system()} {platform.machine()}, torch {torch.__version__}")


def cost_row(config: SRDCConfig, task: TaskData, rows: dict[str, list[dict[str, Any]]], device: torch.device,
             about: dict[str, str]) -> CostRow:
    """The cost-table row of this measurement: the median training time per iteration of the source-only run
    (one batch) and of the SRDC run (two), and the SRDC run's preparation pass (an epoch's wall time beyond its
    training iterations) per image of the domains it passes over."""
    per_iteration = {variant: statistics.median(row["time_train_s"] / row["iterations"] for row in variant_rows)
                     for variant, variant_rows in rows.items()}
    images = len(task.source) + len(task.target) + (len(task.target_test) if task.target_test is not None else 0)
    prepare = statistics.median(row["wall_s_epoch"] - row["time_train_s"] for row in rows["srdc"]) / images
    backbone = task.default_backbone if config.backbone == "auto" else config.backbone
    cuda = device.type == "cuda"
    key = CostKey(backbone, input_size(config, task.default_backbone, domain_facts(task.source)), config.batch_size,
                  dtype_name(config.uses_bf16(cuda), config.uses_channels_last(cuda), cuda),
                  torch.cuda.get_device_name(device) if cuda else CPU)
    figures = (per_iteration["source_only"], per_iteration["srdc"], prepare)
    return CostRow(key, *(float(f"{figure:.4g}") for figure in figures), "measured", about)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="embedded", help="a registered dataset, or 'synthetic'")
    parser.add_argument("--source", default="digits")
    parser.add_argument("--target", default="digits_photo")
    parser.add_argument("--data_root", default="data")
    parser.add_argument("--backbone", default="auto")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=SRDCConfig.batch_size)
    parser.add_argument("--image_size", type=int, default=None,
                        help="the images' side (synthetic: default 224; a dataset: its backbone's default)")
    parser.add_argument("--source_size", type=int, default=498, help="synthetic: source images (default: dslr's)")
    parser.add_argument("--target_size", type=int, default=795, help="synthetic: target images (default: webcam's)")
    parser.add_argument("--classes", type=int, default=31, help="synthetic: classes (default: Office-31's)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--bf16", type=parse_bool, default=False)
    parser.add_argument("--channels_last", type=parse_bool, default=False)
    parser.add_argument("--pin_memory", type=parse_bool, default=False)
    parser.add_argument("--num_workers", type=int, default=0)
    parser.add_argument("--kmeans_n", type=int, default=50_000)
    parser.add_argument("--kmeans_d", type=int, default=2048)
    parser.add_argument("--kmeans_k", type=int, default=31)
    parser.add_argument("--write_costs", nargs="?", const=str(COSTS_FILE), default=None, metavar="PATH",
                        help=f"merge this measurement's row into the cost table (default: {COSTS_FILE})")
    args = parser.parse_args()

    device = resolve_device(args.device)
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    about = {"command": f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')} python "
                        + " ".join(sys.argv), "machine": machine(device),
             "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")}
    n, d, k = args.kmeans_n, args.kmeans_d, args.kmeans_k
    peak, seconds = kmeans_peak_memory(n, d, k, device)  # first, before training raises the process's peak RSS
    print(f"K-means N={n} d={d} K={k} on {device.type}: extra peak {peak:.0f} MiB over the {n * d * 4 / 2**20:.0f} "
          f"MiB of features, 5 iterations in {seconds:.2f}s; a naive N x K x d tensor would be "
          f"{n * k * d * 4 / 2**30:.1f} GiB\n")
    common = {"epochs": args.epochs, "device": args.device, "backbone": args.backbone, "bf16": args.bf16,
              "channels_last": args.channels_last, "pin_memory": args.pin_memory, "num_workers": args.num_workers,
              "weights": "none", "data_root": args.data_root, "batch_size": args.batch_size}
    if args.dataset == "synthetic":
        task = synthetic_task(args.source_size, args.target_size, args.classes, args.image_size or 224)
        base = {"dataset": "embedded", **common}
    else:
        base = {"dataset": args.dataset, "source": args.source, "target": args.target, "image_size": args.image_size,
                **common}
        task = load_task(SRDCConfig(**base))
    print(f"data: {args.dataset} source={len(task.source)} target={len(task.target)}  epochs={args.epochs}  "
          f"batch={args.batch_size}  device={args.device} bf16={args.bf16} channels_last={args.channels_last}")
    rows = {variant: epoch_rows(SRDCConfig(variant=variant, **base), task) for variant in VARIANTS}
    times = {variant: medians(variant_rows) for variant, variant_rows in rows.items()}
    print(f"\n{'per-epoch median (s)':<22}" + "".join(f"{p.replace('_s', ''):>16}" for p in PARTS))
    for variant, parts in times.items():
        print(f"{variant:<22}" + "".join(f"{parts[p]:>16.3f}" for p in PARTS))
    ratio = times["srdc"]["wall_s_epoch"] / times["source_only"]["wall_s_epoch"]
    print(f"\nSRDC epoch / source-only epoch (same data, same process): {ratio:.2f}x")
    if args.write_costs is not None:
        about["data"] = (f"{args.dataset} source={len(task.source)} target={len(task.target)}, {args.epochs} "
                         f"epoch(s) per variant, medians over the epochs")
        # below the torch threads on a CPU: the process waited for cores other jobs held
        about["cpu_time_per_wall_s"] = f"{(time.process_time() - start_cpu) / (time.perf_counter() - start_wall):.2f}"
        row = cost_row(SRDCConfig(**base), task, rows, device, about)
        merge_row(row, Path(args.write_costs))
        print(f"\ncost table {args.write_costs}: {row.key.describe()}: {row.iteration_s_one_batch:.4g} s per "
              f"one-batch iteration, {row.iteration_s_two_batches:.4g} s per two-batch iteration, "
              f"{row.prepare_s_per_image:.3g} s per image of the preparation pass")


if __name__ == "__main__":
    main()
