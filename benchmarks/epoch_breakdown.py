"""Where an SRDC epoch's time goes, and what K-means costs in memory. Prints figures; asserts nothing.

1. Per-epoch wall time split into training steps / preparation pass / K-means / evaluation, for source-only
   and SRDC on the same data in the same process, and the ratio SRDC epoch / source-only epoch.
2. Peak memory of K-means for N=50,000, d=2048, K=31 (CUDA: peak allocated; CPU: peak RSS growth), beside
   the N x K x d tensor a naive implementation would build.

    python benchmarks/epoch_breakdown.py                                  # embedded data, CPU
    python benchmarks/epoch_breakdown.py --dataset digits --data_root ../shared/data --source usps --target mnist
    python benchmarks/epoch_breakdown.py --dataset synthetic --backbone resnet50 --device cuda --bf16 true \
        --channels_last true                                              # ImageNet-sized images on a GPU
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch

from srdc.base import resolve_device
from srdc.cli import parse_bool
from srdc.clustering import kmeans
from srdc.config import SRDCConfig
from srdc.data import TaskData, load_task
from srdc.data.base import tensor_domain
from srdc.trainer import Trainer

PARTS = ("time_train_s", "time_prepare_s", "time_kmeans_s", "time_eval_s", "wall_s_epoch")


def synthetic_task(source_size: int, target_size: int, classes: int, image_size: int) -> TaskData:
    """Random ImageNet-sized images (Office-31 scale: dslr -> webcam sized domains), in memory."""
    generator = torch.Generator().manual_seed(0)

    def domain(name: str, size: int):
        images = torch.randn(size, 3, image_size, image_size, generator=generator)
        return tensor_domain(name, [str(c) for c in range(classes)], images, torch.arange(size) % classes)

    return TaskData(domain("source", source_size), domain("target", target_size), None, "resnet50")


def epoch_times(config: SRDCConfig, task: TaskData) -> dict[str, float]:
    """Median of each time part over the run's training epochs."""
    trainer = Trainer(config, task)
    trainer.fit()
    rows = trainer.history[1:]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="embedded", help="a registered dataset, or 'synthetic'")
    parser.add_argument("--source", default="digits")
    parser.add_argument("--target", default="digits_photo")
    parser.add_argument("--data_root", default="data")
    parser.add_argument("--backbone", default="auto")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--bf16", type=parse_bool, default=False)
    parser.add_argument("--channels_last", type=parse_bool, default=False)
    parser.add_argument("--pin_memory", type=parse_bool, default=False)
    parser.add_argument("--num_workers", type=int, default=0)
    parser.add_argument("--kmeans_n", type=int, default=50_000)
    parser.add_argument("--kmeans_d", type=int, default=2048)
    parser.add_argument("--kmeans_k", type=int, default=31)
    args = parser.parse_args()

    device = resolve_device(args.device)
    n, d, k = args.kmeans_n, args.kmeans_d, args.kmeans_k
    peak, seconds = kmeans_peak_memory(n, d, k, device)  # first, before training raises the process's peak RSS
    print(f"K-means N={n} d={d} K={k} on {device.type}: extra peak {peak:.0f} MiB over the {n * d * 4 / 2**20:.0f} "
          f"MiB of features, 5 iterations in {seconds:.2f}s; a naive N x K x d tensor would be "
          f"{n * k * d * 4 / 2**30:.1f} GiB\n")
    common = {"epochs": args.epochs, "device": args.device, "backbone": args.backbone, "bf16": args.bf16,
              "channels_last": args.channels_last, "pin_memory": args.pin_memory, "num_workers": args.num_workers,
              "weights": "none", "data_root": args.data_root}
    if args.dataset == "synthetic":
        task = synthetic_task(498, 795, 31, 224)
        base = {"dataset": "embedded", **common}
    else:
        base = {"dataset": args.dataset, "source": args.source, "target": args.target, **common}
        task = load_task(SRDCConfig(**base))
    print(f"data: {args.dataset} source={len(task.source)} target={len(task.target)}  epochs={args.epochs}  "
          f"device={args.device} bf16={args.bf16} channels_last={args.channels_last}")
    times = {variant: epoch_times(SRDCConfig(variant=variant, **base), task) for variant in ("source_only", "srdc")}
    print(f"\n{'per-epoch median (s)':<22}" + "".join(f"{p.replace('_s', ''):>16}" for p in PARTS))
    for variant, parts in times.items():
        print(f"{variant:<22}" + "".join(f"{parts[p]:>16.3f}" for p in PARTS))
    ratio = times["srdc"]["wall_s_epoch"] / times["source_only"]["wall_s_epoch"]
    print(f"\nSRDC epoch / source-only epoch (same data, same process): {ratio:.2f}x")



if __name__ == "__main__":
    main()
