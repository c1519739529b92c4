"""What each released-code option (docs/fidelity_notes.md items 22-26, 30, 31, 34) changes on a real task: SRDC on the
digits CNN, every option alone on our earlier code path, and all together (the defaults) against that path, same
seed, same epoch budget. Prints the target accuracies (oracle pick, label-free pick, last epoch) in one table, with
the pooled K-means accuracy and how often a class nobody predicts or an empty K-means cluster arose (what
``empty_centre`` decides); asserts nothing.

    python benchmarks/release_options.py --data-root ../shared/data        # usps -> mnist, 6 epochs, ~2 min a row

Rows run one after the other in this process (one thread each); ``--rows`` picks some, ``--seeds`` adds seeds
(the seed-to-seed spread of the ``ours`` row is the yardstick for the others' differences).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

import srdc.methods.srdc as srdc_method
from srdc.config import SRDCConfig
from srdc.data import load_task
from srdc.selection import summarize
from srdc.trainer import Trainer

# our code path before the released code's behaviour became the default (docs/fidelity_notes.md items 22, 24-26)
OURS = {"centre_grad_accumulate": False, "bottleneck_kmeans_labels": "own", "kmeans_labels": "final",
        "empty_centre": "source"}
ROWS: dict[str, dict[str, Any]] = {
    "ours": OURS,
    "a": {**OURS, "centre_grad_accumulate": True},
    "b": {**OURS, "aux_kmeans_weight": 0.5},
    "c": {**OURS, "bottleneck_kmeans_labels": "pooled"},
    "d": {**OURS, "kmeans_labels": "before_update"},
    "e": {**OURS, "empty_centre": "zero"},
    "bc": {**OURS, "aux_kmeans_weight": 0.5, "bottleneck_kmeans_labels": "pooled"},  # c where it acts after epoch 1
    "release": {},  # the defaults: a + c + d + e, target-first forwards (item 30)
    "release_wa": {"aux_kmeans_weight": 0.5},  # what the Office-31 studies run for W->A
    "source_first": {"forward_order": "source_first"},  # item 30's other order, on the defaults
    "bn_uniform": {"head_bn_init": "uniform"},  # PyTorch <= 1.1's head BatchNorm init (item 34), on the defaults
}
# the row each row's last-epoch difference is taken against: ours for a-e, the defaults for the options on them
BASE = {"source_first": "release", "bn_uniform": "release"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--source", default="usps")
    parser.add_argument("--target", default="mnist")
    parser.add_argument("--variant", default="srdc")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS),
                        help="ours: our earlier path; a-e: one release option each on it; bc: b+c; release: the "
                             "defaults (a+c+d+e); release_wa: + b; source_first, bn_uniform: one option each on the "
                             "defaults")
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args()


@contextmanager
def counting_events() -> Iterator[Counter]:
    """Counts what ``empty_centre`` decides over a run: classes nobody predicts when K-means is initialised from
    the predictions (``unpredicted``) and clusters K-means leaves without a member (``empty``), all spaces."""
    events: Counter = Counter()
    kmeans, centroids = srdc_method.kmeans, srdc_method.centroids_with_fallback

    def counted_centroids(features: torch.Tensor, labels: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
        events["unpredicted"] += int((torch.bincount(labels, minlength=len(fallback)) == 0).sum())
        return centroids(features, labels, fallback)

    def counted_kmeans(features: torch.Tensor, init: torch.Tensor, *args: Any, **kwargs: Any):
        labels, centres = kmeans(features, init, *args, **kwargs)
        events["empty"] += int((torch.bincount(labels, minlength=len(init)) == 0).sum())
        return labels, centres

    srdc_method.kmeans, srdc_method.centroids_with_fallback = counted_kmeans, counted_centroids
    try:
        yield events
    finally:
        srdc_method.kmeans, srdc_method.centroids_with_fallback = kmeans, centroids


def describe(row: str) -> str:
    options = ROWS[row]
    return ", ".join(f"{k}={v}" for k, v in options.items() if OURS.get(k) != v) or "defaults"


def base_of(row: str) -> str:
    return BASE.get(row, "ours")


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    common = {"dataset": "digits", "source": args.source, "target": args.target, "data_root": args.data_root,
              "variant": args.variant, "epochs": args.epochs, "device": "cpu"}
    task = load_task(SRDCConfig(**common))
    results = []
    for seed in args.seeds:
        for row in args.rows:
            start = time.perf_counter()
            trainer = Trainer(SRDCConfig(**common, seed=seed, **ROWS[row]), task)
            with counting_events() as events:
                summary = trainer.fit()
            summary["events"] = f"{events['unpredicted']}/{events['empty']}"
            summary["acc_kmeans_last"] = trainer.history[-1]["acc_kmeans_pooled"]
            summary["release_epochs"] = summarize(trainer.history, "infomax", epochs="release")  # item 31
            summary["wall"] = time.perf_counter() - start
            results.append((row, seed, summary))
            print(f"{row} seed {seed}: last {summary['acc_last']:.2f} ({summary['wall']:.0f} s)", flush=True)
    last = {(row, seed): s["acc_last"] for row, seed, s in results}
    print(f"\n{args.source}->{args.target}, {args.variant}, digits CNN, {args.epochs} epochs, CPU, target accuracy (%)")
    print("| row | options | seed | oracle (epoch) | label-free (epoch) | last | last - base (base) | oracle, "
          "release's epochs 0..E-1 (epoch) | K-means pooled, last | unpredicted/empty | s |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|")
    for row, seed, s in results:
        base = last.get((base_of(row), seed))
        delta = f"{s['acc_last'] - base:+.2f} ({base_of(row)})" if base is not None and row != base_of(row) else "-"
        before = s["release_epochs"]
        print(f"| {row} | {describe(row)} | {seed} | {s['acc_best_oracle']:.2f} ({s['best_oracle_epoch']}) | "
              f"{s['acc_labelfree']:.2f} ({s['labelfree_epoch']}) | {s['acc_last']:.2f} | {delta} | "
              f"{before['acc_best_oracle']:.2f} ({before['best_oracle_epoch']}) | "
              f"{s['acc_kmeans_last']:.2f} | {s['events']} | {s['wall']:.0f} |")


if __name__ == "__main__":
    main()
