"""What ``--feature_norm`` changes on features you can extract here: the digits CNN trained on the source (USPS),
its pooled features of USPS and MNIST, then the head (source-only and SRDC) trained on those features under every
normalisation. Prints the domains' feature statistics and the target accuracies; asserts nothing.

    python benchmarks/feature_norm.py --data-root ../shared/data            # usps -> mnist, ~10 min on 1 core

The CNN is trained on USPS labels only (source-only, ``--cnn-epochs``); MNIST's labels only score the runs.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from srdc.config import SRDCConfig, options
from srdc.data import load_one_domain
from srdc.data.features import normalize_features
from srdc.extract import extract_features, save_features
from srdc.trainer import Trainer


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--source", default="usps")
    parser.add_argument("--target", default="mnist")
    parser.add_argument("--cnn-epochs", type=int, default=3, help="source-only epochs of the digits CNN")
    parser.add_argument("--epochs", type=int, default=20, help="epochs of each head run on the features")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args()


def extract_domains(args: argparse.Namespace, folder: Path) -> dict[str, Path]:
    """Train the CNN source-only on the source, then write both domains' pooled features as ``.npz`` files."""
    config = SRDCConfig(dataset="digits", source=args.source, target=args.target, data_root=args.data_root,
                        variant="source_only", epochs=args.cnn_epochs, batch_size=128, device="cpu")
    trainer = Trainer(config, progress=True)
    summary = trainer.fit()
    print(f"digits CNN, source-only {args.source}->{args.target}: target accuracy {summary['acc_last']:.2f}")
    paths = {}
    for name in (args.source, args.target):
        domain = load_one_domain("digits", name, config)
        features = extract_features(domain, trainer.model.backbone, 256, torch.device("cpu"))
        paths[name] = folder / f"{name}.npz"
        save_features(paths[name], {"features": features, "labels": domain.labels, "classes": np.array(domain.classes)})
    return paths


def statistics(paths: dict[str, Path], how: str) -> str:
    """Mean row norm of each domain and the distance between the domains' mean features, after ``how``."""
    normed = {name: normalize_features(np.load(path)["features"], how) for name, path in paths.items()}
    norms = " ".join(f"{name} |x| {np.linalg.norm(x, axis=1).mean():7.2f}" for name, x in normed.items())
    first, second = normed.values()
    gap = np.linalg.norm(first.mean(axis=0) - second.mean(axis=0)) / np.linalg.norm(first, axis=1).mean()
    return f"{norms}  |mean gap| / |x| {gap:.3f}"


def head_accuracy(paths: dict[str, Path], args: argparse.Namespace, variant: str, how: str, seed: int) -> float:
    source, target = (str(paths[name]) for name in (args.source, args.target))
    config = SRDCConfig(dataset="features", source=source, target=target, variant=variant, feature_norm=how,
                        epochs=args.epochs, seed=seed, batch_size=64, device="cpu")
    return float(Trainer(config).fit()["acc_labelfree"])


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="feature-norm-") as folder:
        paths = extract_domains(args, Path(folder))
        rows = []
        for how in options()["feature_norm"].choices:
            accuracies = {variant: [head_accuracy(paths, args, variant, how, seed) for seed in args.seeds]
                          for variant in ("source_only", "srdc")}
            rows.append((how, statistics(paths, how), accuracies))
            print(f"{how}: done", flush=True)
    print(f"\n{args.source}->{args.target}, head on the CNN's features, {args.epochs} epochs, seeds {args.seeds}, "
          f"target accuracy at the label-free pick (mean ± std)")
    print("| feature_norm | source-only | SRDC | feature statistics |\n|---|---|---|---|")
    for how, stats, accuracies in rows:
        cells = [f"{np.mean(values):.2f} ± {np.std(values):.2f}" for values in accuracies.values()]
        print(f"| {how} | {cells[0]} | {cells[1]} | {stats} |")


if __name__ == "__main__":
    main()
