"""What the GPU speed options buy (issue 12 item 6), in one run on one GPU. Prints figures; asserts nothing.

1. accuracy: the embedded pair trained in fp32 and with the defaults (on CUDA: bf16 autocast + channels-last);
   their accuracies should agree.
2. throughput: images/s of an SRDC training iteration (64 source + 64 target images: the Trainer's own epoch loop
   with SRDC's losses, on synthetic 224-px images held on the GPU) over a bare torchvision ResNet-50 training step
   on 128 of the same images (goal: >= 0.9), in fp32 and in bf16 + channels-last.
3. prepare: images/s of the preparation pass (``Trainer.extract``: inference mode) at eval batch 64, 256, 512.
4. trials: 1, 2, 4 and 8 concurrent ``srdc-train`` processes sharing the GPU (what ``--gpus-per-trial`` 1, 0.5,
   0.25, 0.125 give), each on the same JPEG image lists read through the decoded image cache (built once, before
   timing): trials/hour, their summed training images/s and the GPU's utilisation (nvidia-smi, every 0.5 s).
5. costs: the per-epoch cost table rows ``--dry-run`` plans with, fp32 and bf16 + channels-last, measured by
   ``benchmarks/epoch_breakdown.py --write_costs PATH`` into ``--costs PATH`` (else the commands are printed).
6. compile: ``torch.compile``'s compilation time against its gain per iteration and per preparation-pass image, the
   break-even in epochs and the net gain over 200 epochs of ``--epoch_iterations`` iterations and
   ``--epoch_images`` preparation-pass images (default: Office-31 A->W, 2817 // 64 and 2817 + 795). Last: it is
   the longest part (minutes of compilation) and the least certain.

    python benchmarks/gpu_throughput.py                                      # one H100/H200: 6-8 min (estimated)
    cp srdc/harness/epoch_costs.json "$OUT"/ && python benchmarks/gpu_throughput.py --costs "$OUT"/epoch_costs.json
    python benchmarks/gpu_throughput.py --parts throughput compile           # some parts only
    python benchmarks/gpu_throughput.py --device cpu --quick                 # tiny sizes, no compile: it runs (~1 min)

Each part prints its seconds when it ends. Its subprocesses (``srdc-train``, ``epoch_breakdown.py``) get the
repository on PYTHONPATH: the package need not be installed.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from epoch_breakdown import synthetic_task  # this folder's sibling script

from srdc.base import resolve_device
from srdc.config import SRDCConfig
from srdc.data import TaskData
from srdc.data.base import Domain, tensor_domain
from srdc.trainer import Trainer
from srdc.trialfiles import HISTORY, read_history

REPO = Path(__file__).resolve().parents[1]
PARTS = ("accuracy", "throughput", "prepare", "trials", "costs", "compile")
SETTINGS = {"fp32": {"bf16": False, "channels_last": False},
            "bf16+channels_last": {"bf16": True, "channels_last": True}}


@dataclass(frozen=True)
class Sizes:
    """How much each part measures."""

    backbone: str = "resnet50"
    image_size: int = 224
    batch_size: int = 64  # per domain: an SRDC iteration is 2 x batch_size images, the bare step as many
    classes: int = 31
    domain_images: int = 1024  # synthetic images per domain (parts 2, 3, 6), on the device
    epochs: int = 2  # steady epochs measured per setting, after one warm-up epoch
    eval_batches: tuple[int, ...] = (64, 256, 512)
    accuracy_epochs: int = 20
    accuracy_seeds: tuple[int, ...] = (0, 1)
    accuracy_samples: int | None = None  # per domain of the embedded pair (None: all, 450 + 448)
    trial_images: int = 768  # JPEG images per domain of a trial
    trial_side: int = 256  # their side in pixels, before the backbone's resize and crop
    trial_epochs: int = 2
    concurrency: tuple[int, ...] = (1, 2, 4, 8)


QUICK = Sizes(backbone="resnet18", image_size=16, batch_size=4, classes=4, domain_images=16, epochs=1,
              eval_batches=(4, 16), accuracy_epochs=1, accuracy_seeds=(0,), accuracy_samples=100, trial_images=16,
              trial_side=40, trial_epochs=1, concurrency=(1, 2))


# -- timing ---------------------------------------------------------------------------------------------------
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(work: Callable[[], Any], device: torch.device, repeats: int = 1) -> float:
    """Seconds per call of ``work``, the device's queue drained before and after."""
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        work()
    synchronize(device)
    return (time.perf_counter() - start) / repeats


def release(device: torch.device) -> None:
    """Free what the last measurement left on the device."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def config_for(sizes: Sizes, device: torch.device, **overrides: Any) -> SRDCConfig:
    """An SRDC run of ``sizes``' backbone from scratch on ``device`` (its data is passed to the Trainer)."""
    return SRDCConfig(backbone=sizes.backbone, weights="none", batch_size=sizes.batch_size, device=device.type,
                      **overrides)


def ran_as(execution: dict[str, Any]) -> str:
    """What a Trainer ran (:meth:`Trainer.execution`), in a few words."""
    layout = "+channels_last" if execution["channels_last"] else ""
    return f"{execution['precision']}{layout}{'+compile' if execution['compile'] else ''}, {execution['sgd']} SGD"


def resident(domain: Domain, device: torch.device) -> Domain:
    """``domain`` (in memory) with its images on ``device``: the timings leave out host-to-device copies."""
    images, labels = domain.train_set.tensors
    return tensor_domain(domain.name, domain.classes, images.to(device), labels)


def device_task(sizes: Sizes, device: torch.device) -> TaskData:
    task = synthetic_task(sizes.domain_images, sizes.domain_images, sizes.classes, sizes.image_size)
    return TaskData(resident(task.source, device), resident(task.target, device), None, sizes.backbone)


# -- 1. accuracy ----------------------------------------------------------------------------------------------
def accuracy(sizes: Sizes, device: torch.device) -> None:
    print(f"\n1. accuracy: embedded pair (digits -> digits_photo), {sizes.accuracy_epochs} epochs, seeds "
          f"{list(sizes.accuracy_seeds)}; fp32 vs the defaults")
    print(f"{'setting':<10}{'ran as':<32}{'acc_last':>16}{'acc_best_oracle (mean)':>26}")
    for label, overrides in {"fp32": SETTINGS["fp32"], "default": {}}.items():
        summaries = [Trainer(SRDCConfig(device=device.type, epochs=sizes.accuracy_epochs, seed=seed,
                                        max_samples=sizes.accuracy_samples, **overrides)).fit()
                     for seed in sizes.accuracy_seeds]
        last = " ".join(f"{s['acc_last']:.2f}" for s in summaries)
        best = statistics.fmean(s["acc_best_oracle"] for s in summaries)
        print(f"{label:<10}{ran_as(summaries[0]['execution']):<32}{last:>16}{best:>26.2f}")


# -- 2. throughput --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SRDCTiming:
    first_s: float  # the first preparation pass and training epoch: warm-up (and compilation)
    iteration_s: float  # a steady training iteration: a source and a target batch
    image_s: float  # a steady preparation-pass image
    ran: dict[str, Any]  # Trainer.execution()


def time_srdc(config: SRDCConfig, task: TaskData, epochs: int) -> SRDCTiming:
    """The Trainer's own epoch loop (``train_epoch``: SRDC's losses, the finiteness check, the optimizer) and its
    preparation pass over the target domain."""
    trainer = Trainer(config, task)
    first_s = timed(lambda: (trainer.initialise(), trainer.train_epoch()), trainer.device)
    rows: list[dict[str, Any]] = []
    train_s = timed(lambda: rows.append(trainer.train_epoch()), trainer.device, epochs) * epochs
    image_s = timed(lambda: trainer.extract(task.target), trainer.device, 2) / len(task.target)
    return SRDCTiming(first_s, train_s / sum(row["iterations"] for row in rows), image_s, trainer.execution())


def time_bare_step(config: SRDCConfig, task: TaskData, steps: int) -> float:
    """Seconds per training step of the bare torchvision backbone (its own classifier, cross-entropy) on
    2 x batch_size images, with the Trainer's precision, layout and SGD kernels."""
    import torchvision

    device = resolve_device(config.device)
    cuda = device.type == "cuda"
    model = torchvision.models.get_model(config.backbone, weights=None, num_classes=task.num_classes).to(device)
    images = task.source.train_set.tensors[0][: 2 * config.batch_size]
    if config.uses_channels_last(cuda):
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.arange(len(images), device=device) % task.num_classes
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4, fused=cuda,
                                foreach=not cuda)

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16) if config.uses_bf16(cuda) else nullcontext():
            loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    timed(step, device, 3)  # warm-up
    return timed(step, device, steps)


def throughput(sizes: Sizes, device: torch.device, task: TaskData) -> None:
    images = 2 * sizes.batch_size
    print(f"\n2. throughput: {sizes.backbone}, {sizes.image_size} px, SRDC iteration {sizes.batch_size} + "
          f"{sizes.batch_size} images vs a bare step on {images}; synthetic images on the {device.type}")
    print(f"{'setting':<20}{'ran as':<32}{'bare img/s':>12}{'SRDC img/s':>12}{'SRDC/bare':>11}  (goal >= 0.9)")
    rates = {}
    for label, overrides in SETTINGS.items():
        config = config_for(sizes, device, **overrides)
        srdc = time_srdc(config, task, sizes.epochs)
        release(device)
        bare = images / time_bare_step(config, task, max(5, sizes.epochs * sizes.domain_images // sizes.batch_size))
        release(device)
        rates[label] = (bare, images / srdc.iteration_s)
        print(f"{label:<20}{ran_as(srdc.ran):<32}{bare:>12.0f}{rates[label][1]:>12.0f}{rates[label][1] / bare:>11.2f}")
    (bare32, srdc32), (bare16, srdc16) = rates.values()
    print(f"bf16+channels_last over fp32: bare {bare16 / bare32:.2f}x, SRDC {srdc16 / srdc32:.2f}x")


# -- 3. preparation pass --------------------------------------------------------------------------------------
def extract_rate(config: SRDCConfig, task: TaskData) -> float:
    """Images/s of the preparation pass over the target domain, after one warm-up pass."""
    trainer = Trainer(config, task)
    trainer.extract(task.target)
    return len(task.target) / timed(lambda: trainer.extract(task.target), trainer.device, 3)


def prepare(sizes: Sizes, device: torch.device, task: TaskData) -> None:
    print(f"\n3. preparation pass (inference mode, the defaults' precision): {len(task.target)} images")
    print(f"{'eval batch':<12}{'img/s':>10}")
    for batch in sizes.eval_batches:
        print(f"{batch:<12}{extract_rate(config_for(sizes, device, eval_batch_size=batch), task):>10.0f}")
        release(device)


# -- 4. concurrent trials -------------------------------------------------------------------------------------
def write_image_lists(folder: Path, sizes: Sizes) -> tuple[Path, Path]:
    """A source and a target list of ``trial_images`` smooth random JPEGs each (``PATH LABEL`` lines)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    lists = []
    for domain in ("source", "target"):
        (folder / domain).mkdir(parents=True)
        lines = []
        for i in range(sizes.trial_images):
            pixels = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
            pixels.resize((sizes.trial_side, sizes.trial_side), Image.BILINEAR).save(folder / domain / f"{i}.jpg")
            lines.append(f"{domain}/{i}.jpg {i % sizes.classes}")
        (folder / f"{domain}.txt").write_text("\n".join(lines) + "\n")
        lists.append(folder / f"{domain}.txt")
    return lists[0], lists[1]


def trial_command(sizes: Sizes, device: torch.device, lists: tuple[Path, Path], cache: Path, out: Path,
                  seed: int, epochs: int, workers: int) -> list[str]:
    image_size = [] if sizes.image_size == 224 else ["--image_size", str(sizes.image_size)]
    return [sys.executable, "-m", "srdc.cli", "--dataset", "imagelist", "--source", str(lists[0]), "--target",
            str(lists[1]), "--backbone", sizes.backbone, "--weights", "none", "--batch_size", str(sizes.batch_size),
            "--epochs", str(epochs), "--seed", str(seed), "--device", device.type, "--image_cache", str(cache),
            "--num_workers", str(workers), "--pin_memory", str(device.type == "cuda"), "--threads", "1",
            "--quiet", "--out", str(out), *image_size]


def start_trial(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    """``command`` running, its progress lines and errors going to ``log``."""
    with log.open("w") as stream:
        return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stream)


def gpu_sampler(device: torch.device) -> subprocess.Popen | None:
    """nvidia-smi printing the GPU's utilisation (%) and memory used (MiB) every 0.5 s (one GPU per machine)."""
    if device.type != "cuda" or shutil.which("nvidia-smi") is None:
        return None
    return subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits",
                             "-lms", "500"], stdout=subprocess.PIPE, text=True)


def gpu_figures(sampler: subprocess.Popen | None) -> str:
    if sampler is None:
        return "n/a"
    sampler.terminate()
    samples = [[float(x) for x in line.split(",")] for line in sampler.communicate()[0].splitlines() if "," in line]
    if not samples:
        return "no samples"
    return f"{statistics.fmean(u for u, _ in samples):.0f}% mean, {max(m for _, m in samples) / 1024:.1f} GiB peak"


def train_rate(out: Path, batch_size: int) -> float | None:
    """A finished run's training images/s: its iterations' images over their time (its history)."""
    if not (out / HISTORY).is_file():
        return None
    rows = [row for row in read_history(out) if "iterations" in row]
    return sum(row["iterations"] * 2 * batch_size for row in rows) / sum(row["time_train_s"] for row in rows)


def trials(sizes: Sizes, device: torch.device) -> None:
    cores = os.cpu_count() or 1
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory(prefix="gpu_throughput_") as work:
        folder = Path(work)
        lists = write_image_lists(folder / "images", sizes)
        cache = folder / "cache"
        print(f"\n4. concurrent trials: srdc-train processes, each {sizes.trial_epochs} epoch(s) of SRDC on "
              f"{sizes.trial_images} + {sizes.trial_images} JPEGs ({sizes.trial_side} px, {sizes.backbone}, "
              f"from scratch) through the decoded image cache; {cores} CPU cores shared")
        start = time.perf_counter()
        warm = subprocess.run(trial_command(sizes, device, lists, cache, folder / "warm", 0, 1, 1), env=env,
                              capture_output=True, text=True)
        if warm.returncode:
            print(f"the warm-up run failed:\n{warm.stderr[-3000:]}")
            return
        print(f"(cache built by a 1-epoch warm-up run: {time.perf_counter() - start:.1f} s)")
        print(f"{'trials':<8}{'gpus/trial':>11}{'workers':>9}{'wall s':>9}{'trials/hour':>13}{'train img/s':>13}"
              f"{'failed':>8}  GPU utilisation, memory")
        for k in sizes.concurrency:
            workers = max(1, cores // k - 1)
            outs = [folder / f"k{k}_{i}" for i in range(k)]
            sampler = gpu_sampler(device)
            start = time.perf_counter()
            runs = [start_trial(trial_command(sizes, device, lists, cache, out, i, sizes.trial_epochs, workers),
                                out.with_suffix(".log"), env) for i, out in enumerate(outs)]
            codes = [run.wait() for run in runs]
            wall = time.perf_counter() - start
            figures = gpu_figures(sampler)
            failed = [(out.with_suffix(".log").read_text().strip().splitlines() or ["no output"])[-1]
                      for out, code in zip(outs, codes, strict=True) if code]
            rates = [rate for out in outs if (rate := train_rate(out, sizes.batch_size)) is not None]
            print(f"{k:<8}{1 / k:>11.3g}{workers:>9}{wall:>9.1f}{(k - len(failed)) * 3600 / wall:>13.0f}"
                  f"{sum(rates):>13.0f}{len(failed):>8}  {figures}")
            for line in dict.fromkeys(failed):
                print(f"    failed: {line}")
    print("trials/hour counts whole processes (start-up, data, preparation passes); train img/s sums each "
          "trial's training images over its own training time (they ran side by side)")


# -- 5. cost table --------------------------------------------------------------------------------------------
def costs(device: torch.device, path: str | None) -> None:
    base = [sys.executable, str(REPO / "benchmarks" / "epoch_breakdown.py"), "--dataset", "synthetic", "--backbone",
            "resnet50", "--device", "cuda", "--epochs", "2", "--kmeans_n", "1000"]
    commands = [[*base, "--bf16", bf16, "--channels_last", bf16] for bf16 in ("false", "true")]
    print("\n5. per-epoch cost table (what --dry-run plans with)")
    if path is None or device.type != "cuda":
        print("not measured here (needs --costs PATH and a CUDA device); on a GPU run:")
        for command in commands:
            print("    python " + " ".join([*command[1:], "--write_costs"]).replace(str(REPO) + "/", ""))
        return
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    for command in commands:
        done = subprocess.run([*command, "--write_costs", path], env=env, capture_output=True, text=True)
        print(done.stdout.strip().splitlines()[-1] if done.returncode == 0 else f"failed: {done.stderr[-2000:]}")


# -- 6. compile -----------------------------------------------------------------------------------------------
def compile_gain(sizes: Sizes, device: torch.device, task: TaskData, epoch_iterations: int,
                 epoch_images: int) -> None:
    print(f"\n6. torch.compile (mode default), the defaults' precision, {sizes.backbone} {sizes.image_size} px")
    eager = time_srdc(config_for(sizes, device), task, sizes.epochs)
    release(device)
    compiled = time_srdc(config_for(sizes, device, compile=True), task, sizes.epochs)
    release(device)
    compile_s = compiled.first_s - eager.first_s
    print(f"{'':<10}{'first pass + epoch s':>22}{'iteration ms':>14}{'prepare ms/img':>16}")
    for label, timing in (("eager", eager), ("compiled", compiled)):
        print(f"{label:<10}{timing.first_s:>22.1f}{timing.iteration_s * 1e3:>14.2f}{timing.image_s * 1e3:>16.3f}")
    eager_epoch = epoch_iterations * eager.iteration_s + epoch_images * eager.image_s
    gain = eager_epoch - (epoch_iterations * compiled.iteration_s + epoch_images * compiled.image_s)
    print(f"compilation: {compile_s:.1f} s (the first pass and epoch, compiled minus eager); an epoch of "
          f"{epoch_iterations} iterations + {epoch_images} preparation images: {eager_epoch:.2f} s eager, "
          f"{eager_epoch - gain:.2f} s compiled, {gain / eager_epoch:+.1%} saved (K-means, validators left out)")
    if gain > 0:
        net = 200 * gain - compile_s
        print(f"break-even after {compile_s / gain:.1f} epochs; over 200 epochs: {net:+.0f} s "
              f"({net / (200 * eager_epoch):+.1%} of the eager {200 * eager_epoch:.0f} s)")
    else:
        print("no gain per epoch: compilation never pays back")


def header(device: torch.device, sizes: Sizes) -> None:
    gpu = f"{torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}, " if device.type == "cuda" else ""
    print(f"{gpu}torch {torch.__version__}, {os.cpu_count()} CPU cores, {torch.get_num_threads()} torch threads")
    print("sizes: " + ", ".join(f"{k} {v}" for k, v in dataclasses.asdict(sizes).items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a CPU check that the script runs)")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=None,
                        help="the parts to run (default: all; with --quick all but compile)")
    parser.add_argument("--costs", default=None, metavar="PATH",
                        help="part 5: merge the measured rows into this cost table (a copy of the repository's)")
    parser.add_argument("--epoch_iterations", type=int, default=2817 // 64,
                        help="part 6: training iterations per epoch to extrapolate to (default: Office-31 A->W)")
    parser.add_argument("--epoch_images", type=int, default=2817 + 795,
                        help="part 6: preparation-pass images per epoch (default: Office-31 A->W)")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # progress as each part ends, also into a file

    device = resolve_device(args.device)
    sizes = QUICK if args.quick else Sizes()
    if args.quick:
        torch.set_num_threads(1)  # a check that it runs: on a shared CPU more threads only wait for each other
    parts = args.parts or [part for part in PARTS if not (args.quick and part == "compile")]
    header(device, sizes)
    task = device_task(sizes, device) if {"throughput", "prepare", "compile"} & set(parts) else None
    for part in parts:
        start = time.perf_counter()
        if part == "accuracy":
            accuracy(sizes, device)
        elif part == "throughput":
            throughput(sizes, device, task)
        elif part == "prepare":
            prepare(sizes, device, task)
        elif part == "trials":
            trials(sizes, device)
        elif part == "costs":
            costs(device, args.costs)
        else:
            compile_gain(sizes, device, task, args.epoch_iterations, args.epoch_images)
        print(f"[{part}: {time.perf_counter() - start:.0f} s]")
    if args.quick and "compile" not in parts:
        print("\n6. torch.compile: not run with --quick (inductor takes minutes on a CPU)")


if __name__ == "__main__":
    main()
