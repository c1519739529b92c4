"""``srdc-data``: list, download, verify, split and extract features of datasets (docs/datasets.md).

    srdc-data list [--root DIR]
    srdc-data download NAME --root DIR [--archive FILE] [--keep-archive]
    srdc-data verify NAME --root DIR
    srdc-data split NAME --domain X --root DIR --seed 0 --out DIR
    srdc-data extract-features --dataset NAME --domain X --root DIR --out X.npz [--backbone resnet50]
                               [--weights imagenet|none|PATH] [--batch-size 64] [--device auto|cpu|cuda]

Bad input and failed downloads print ``error: ...`` on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from srdc.base import run_main
from srdc.config import SRDCConfig
from srdc.data import load_one_domain
from srdc.data.base import Domain
from srdc.data.benchmarks import BENCHMARKS, find_domain_path, get_benchmark, verify_benchmark
from srdc.data.download import download_benchmark
from srdc.data.images import write_image_list
from srdc.data.splits import stratified_split
from srdc.errors import SRDCInputError
from srdc.extract import ExtractionRequest, run_extraction


def cmd_list(args: argparse.Namespace) -> int:
    """Every benchmark: domains with letters and expected counts, archive, md5, URLs (and status under --root)."""
    for bench in BENCHMARKS.values():
        print(f"{bench.name}: {bench.title}, {len(bench.classes)} classes")
        print(f"  archive {bench.archive}  md5 {bench.md5 or 'unverified'}  ({bench.homepage})")
        for url in bench.urls:
            print(f"  url {url}")
        for domain in bench.domains:
            count = f"{domain.count} images" if domain.count is not None else "count unverified"
            status = ""
            if args.root is not None:
                found = find_domain_path(bench, Path(args.root) / bench.name, domain)
                status = f"  found at {found}" if found else "  not downloaded"
            print(f"  {domain.letter:>2} {domain.name:<12} {count:>16}{status}")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    bench = get_benchmark(args.name)
    archive = Path(args.archive) if args.archive else None
    final = download_benchmark(bench, Path(args.root), archive, args.keep_archive, progress=not args.quiet)
    counts = verify_benchmark(bench, final)
    print(f"{bench.name} is at {final}: " + ", ".join(f"{name} {n}" for name, n in counts.items()))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    bench = get_benchmark(args.name)
    counts = verify_benchmark(bench, Path(args.root) / bench.name)
    for domain in bench.domains:
        print(f"{domain.letter:>2} {domain.name:<12} {counts[domain.name]:>5} images, {len(bench.classes)} classes: ok")
    return 0


def write_split(domain: Domain, seed: int, out: Path) -> tuple[int, int]:
    """``out/train.txt`` and ``out/test.txt`` (the inductive 50/50 halves, by the same ``stratified_split`` as
    training) and ``out/classes.txt``; returns the two sizes."""
    samples = getattr(domain.eval_set, "samples", None)
    if samples is None:
        raise SRDCInputError(f"domain {domain.name!r} is held in memory, not in image files: split writes image lists")
    train_idx, test_idx = stratified_split(domain.labels, seed)
    out.mkdir(parents=True, exist_ok=True)
    write_image_list([samples[i] for i in train_idx], out / "train.txt")
    write_image_list([samples[i] for i in test_idx], out / "test.txt")
    (out / "classes.txt").write_text("".join(f"{name}\n" for name in domain.classes), encoding="utf-8")
    return len(train_idx), len(test_idx)


def cmd_split(args: argparse.Namespace) -> int:
    config = SRDCConfig(dataset=args.name, source=args.domain, target=args.domain, data_root=args.root,
                        path_prefix=args.path_prefix)
    domain = load_one_domain(args.name, args.domain, config)
    out = Path(args.out)
    train, test = write_split(domain, args.seed, out)
    print(f"{domain.name}: {train} train / {test} test (seed {args.seed}) -> {out}/train.txt, {out}/test.txt, "
          f"{out}/classes.txt")
    print(f"use them with: --dataset imagelist --target {out}/train.txt --classes_file {out}/classes.txt")
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    request = ExtractionRequest(
        dataset=args.dataset, domain=args.domain, root=args.root, out=Path(args.out), backbone=args.backbone,
        weights=args.weights, batch_size=args.batch_size, device=args.device, image_size=args.image_size,
        num_workers=args.num_workers, path_prefix=args.path_prefix,
    )
    out = run_extraction(request, progress=not args.quiet)
    print(f"wrote {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="srdc-data", description="Datasets for SRDC: download, verify, split, "
                                     "extract features. See docs/datasets.md.")
    commands = parser.add_subparsers(dest="command", required=True)

    listing = commands.add_parser("list", help="the registered benchmarks, their URLs, md5 and image counts")
    listing.add_argument("--root", default=None, help="also say which domains are present under this folder")
    listing.set_defaults(run=cmd_list)

    download = commands.add_parser("download", help="download, check (md5, counts) and install a benchmark")
    download.add_argument("name", choices=sorted(BENCHMARKS))
    download.add_argument("--root", required=True, help="installs ROOT/NAME")
    download.add_argument("--archive", default=None, help="use this archive, downloaded by hand, instead")
    download.add_argument("--keep-archive", action="store_true", help="keep ROOT/.downloads/ARCHIVE afterwards")
    download.add_argument("--quiet", action="store_true", help="no progress bar")
    download.set_defaults(run=cmd_download)

    verify = commands.add_parser("verify", help="check ROOT/NAME: every domain, its classes and image count")
    verify.add_argument("name", choices=sorted(BENCHMARKS))
    verify.add_argument("--root", required=True)
    verify.set_defaults(run=cmd_verify)

    split = commands.add_parser("split", help="write the inductive 50/50 split of a domain as image lists")
    split.add_argument("name", help="a dataset: a benchmark, folder or imagelist")
    split.add_argument("--domain", required=True, help="a domain name or letter (a path for folder/imagelist)")
    split.add_argument("--root", default="data")
    split.add_argument("--seed", type=int, default=0, help="the split_seed of training (default 0)")
    split.add_argument("--out", required=True, help="folder for train.txt, test.txt, classes.txt")
    split.add_argument("--path-prefix", "--path_prefix", dest="path_prefix", default=None, help="OLD=NEW")
    split.set_defaults(run=cmd_split)

    extract = commands.add_parser("extract-features", help="backbone features of one domain into a .npz file")
    extract.add_argument("--dataset", required=True)
    extract.add_argument("--domain", required=True)
    extract.add_argument("--root", default="data")
    extract.add_argument("--out", required=True)
    extract.add_argument("--backbone", default="resnet50")
    extract.add_argument("--weights", default="imagenet", help="imagenet, none, or a .pth file")
    extract.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int, default=64)
    extract.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    extract.add_argument("--image-size", "--image_size", dest="image_size", type=int, default=None)
    extract.add_argument("--num-workers", "--num_workers", dest="num_workers", type=int, default=0)
    extract.add_argument("--path-prefix", "--path_prefix", dest="path_prefix", default=None, help="OLD=NEW")
    extract.add_argument("--quiet", action="store_true", help="no progress bar")
    extract.set_defaults(run=cmd_extract)
    return parser


def main(argv: list[str] | None = None) -> int:
    """``srdc-data``'s exit status: 0, or 2 with one ``error: ...`` line on stderr for bad input."""
    args = build_parser().parse_args(argv)
    return run_main(lambda: args.run(args))


if __name__ == "__main__":
    sys.exit(main())
