"""``srdc-data``: list, download, verify, split, cache and extract features of datasets (docs/datasets.md).

    srdc-data list [--root DIR]
    srdc-data download NAME --root DIR [--archive FILE] [--keep-archive] [--accept-unverified]
                       [--release-lists-url URL]
    srdc-data verify NAME --root DIR
    srdc-data fingerprint ARCHIVE [--out MANIFEST.json | --check MANIFEST.json] [--benchmark NAME]
    srdc-data split NAME --domain X --root DIR --seed 0 --out DIR
    srdc-data cache NAME [--domain X ...] --root DIR [--image-size S] [--backbone B] [--augment A] [--cache DIR]
    srdc-data extract-features --dataset NAME --domain X --root DIR --out X.npz [--backbone resnet50]
                               [--weights imagenet|none|PATH] [--batch-size 64] [--device auto|cpu|cuda]

Bad input (usage errors included) and failed downloads print one ``error: ...`` line on stderr and exit with
status 2. Each command imports what it needs (``--help`` imports no torch); ``extract-features`` first says how many
threads torch uses.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from srdc.base import THREADS_HELP, ArgumentParser, run_main, set_torch_threads
from srdc.config import SRDCConfig, options
from srdc.data import load_one_domain
from srdc.data.base import Domain
from srdc.data.benchmarks import BENCHMARKS, Benchmark, find_domain_path, get_benchmark, verify_benchmark
from srdc.data.release_splits import (
    LISTS_FOLDER,
    RELEASE_COMMIT,
    RELEASE_HALVES,
    RELEASE_LISTS_URL,
    fetch_release_lists,
)
from srdc.data.splits import stratified_split
from srdc.errors import SRDCInputError


def first_seen_note(bench: Benchmark) -> str:
    """For a benchmark without a published md5: its first-seen md5 (confirmed by a user), or that none is recorded."""
    if bench.md5 is not None:
        return ""
    return f" (first seen, not published: {bench.md5_first_seen or 'none recorded'})"


def cmd_list(args: argparse.Namespace) -> int:
    """Every benchmark: domains with letters and expected counts, archive, md5, URLs (and status under --root)."""
    for bench in BENCHMARKS.values():
        print(f"{bench.name}: {bench.title}, {len(bench.classes)} classes")
        print(f"  archive {bench.archive}  md5 {bench.md5 or 'unverified'}{first_seen_note(bench)}  ({bench.homepage})")
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
    from srdc.data.download import download_benchmark

    bench = get_benchmark(args.name)
    archive = Path(args.archive) if args.archive else None
    final = download_benchmark(bench, Path(args.root), archive, args.keep_archive, progress=not args.quiet,
                               accept_unverified=args.accept_unverified)
    counts = verify_benchmark(bench, final)
    print(f"{bench.name} is at {final}: " + ", ".join(f"{name} {n}" for name, n in counts.items()))
    if bench.name in RELEASE_HALVES:
        lists = fetch_release_lists(bench.name, final, args.release_lists_url, progress=not args.quiet)
        print(f"the release's {len(lists)} inductive half lists (commit {RELEASE_COMMIT[:7]}) are at "
              f"{final / LISTS_FOLDER}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    bench = get_benchmark(args.name)
    counts = verify_benchmark(bench, Path(args.root) / bench.name)
    for domain in bench.domains:
        print(f"{domain.letter:>2} {domain.name:<12} {counts[domain.name]:>5} images, {len(bench.classes)} classes: ok")
    return 0


def cmd_fingerprint(args: argparse.Namespace) -> int:
    """Print an archive's md5, size and member count; write its manifest, or check it against a recorded one
    (``--check``) and against a benchmark's md5 and layout (``--benchmark``)."""
    from srdc.data.download import verification_problems
    from srdc.data.fingerprint import compare_fingerprints, fingerprint_archive, read_fingerprint, write_fingerprint

    archive = Path(args.archive)
    got = fingerprint_archive(archive)
    print(f"{archive}: md5 {got.md5}, {got.size} bytes, {len(got.members)} files")
    if args.benchmark is not None:
        bench = get_benchmark(args.benchmark)
        reasons = verification_problems(bench, archive, got.md5)
        if reasons:
            raise SRDCInputError(f"{archive} does not verify as {bench.name}: " + "; ".join(reasons))
        print(f"{archive} verifies as {bench.name}")
    if args.check is not None:
        manifest = Path(args.check)
        problems = compare_fingerprints(got, read_fingerprint(manifest))
        if problems:
            raise SRDCInputError(f"{archive} does not match the fingerprint {manifest}: " + "; ".join(problems))
        print(f"{archive} matches the fingerprint {manifest}")
        return 0
    out = Path(args.out) if args.out else archive.with_name(archive.name + ".fingerprint.json")
    write_fingerprint(got, out)
    print(f"wrote {out}")
    return 0


def write_split(domain: Domain, seed: int, out: Path) -> tuple[int, int]:
    """``out/train.txt`` and ``out/test.txt`` (the inductive 50/50 halves, by the same ``stratified_split`` as
    training) and ``out/classes.txt``; returns the two sizes."""
    from srdc.data.images import write_image_list

    samples = getattr(domain.eval_set, "samples", None)
    if samples is None:
        raise SRDCInputError(f"domain {domain.name!r} is held in memory, not in image files: split writes image lists")
    train_idx, test_idx = stratified_split(domain.labels, seed)
    out.mkdir(parents=True, exist_ok=True)
    write_image_list([samples[i] for i in train_idx], out / "train.txt")
    write_image_list([samples[i] for i in test_idx], out / "test.txt")
    (out / "classes.txt").write_text("".join(f"{name}\n" for name in domain.classes), encoding="utf-8")
    return len(train_idx), len(test_idx)


def check_output_folder(out: Path) -> None:
    """``out`` may be created as a folder: it is not a file, nor under one."""
    for path in (out, *out.parents):
        if path.exists() and not path.is_dir():
            raise SRDCInputError(f"--out {out}: {path} is a file, not a folder; choose another --out")


def cmd_split(args: argparse.Namespace) -> int:
    if args.seed < 0:
        raise SRDCInputError(f"--seed must be >= 0, got {args.seed}")
    check_output_folder(Path(args.out))
    config = SRDCConfig(dataset=args.name, source=args.domain, target=args.domain, data_root=args.root,
                        path_prefix=args.path_prefix, image_cache="off")  # the labels only: no image is read
    domain = load_one_domain(args.name, args.domain, config)
    out = Path(args.out)
    train, test = write_split(domain, args.seed, out)
    print(f"{domain.name}: {train} train / {test} test (seed {args.seed}) -> {out}/train.txt, {out}/test.txt, "
          f"{out}/classes.txt")
    print(f"use them with: --dataset imagelist --target {out}/train.txt --classes_file {out}/classes.txt")
    return 0


def cache_domains(args: argparse.Namespace) -> list[str]:
    """The domains ``srdc-data cache`` builds: ``--domain`` as given, else every domain of a benchmark."""
    if args.domain:
        return args.domain
    if args.name not in BENCHMARKS:
        raise SRDCInputError(f"{args.name} has no fixed domains: name them with --domain (a path for folder and "
                             "imagelist)")
    return [domain.name for domain in BENCHMARKS[args.name].domains]


def cmd_cache(args: argparse.Namespace) -> int:
    """Build (or check) the decoded-image cache of each domain, as a run with the same options would use it."""
    import time

    from srdc.data.decoded import DecodedDataset

    if args.cache == "off":
        raise SRDCInputError("--cache off builds nothing; give auto or a folder")
    for name in cache_domains(args):
        config = SRDCConfig(dataset=args.name, source=name, target=name, data_root=args.root, backbone=args.backbone,
                            augment=args.augment, image_size=args.image_size, path_prefix=args.path_prefix,
                            image_cache=args.cache)
        start = time.perf_counter()
        domain = load_one_domain(args.name, name, config)
        if not isinstance(domain.eval_set, DecodedDataset):
            raise SRDCInputError(f"{args.name} is held in memory, not in image files: there is nothing to cache")
        images = domain.eval_set.images
        print(f"{domain.name}: {len(images)} images, {images.nbytes / 2**20:.1f} MiB at {images.path} "
              f"(ready in {time.perf_counter() - start:.1f} s)")
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    from srdc.extract import ExtractionRequest, run_extraction

    if args.batch_size < 1 or args.num_workers < 0:
        raise SRDCInputError(f"--batch-size must be >= 1 and --num-workers >= 0, got {args.batch_size} and "
                             f"{args.num_workers}")
    threads = set_torch_threads(args.threads)
    out = Path(args.out)
    if out.is_dir():
        raise SRDCInputError(f"--out {out} is a folder; give the path of the .npz file to write")
    check_output_folder(out.parent)
    request = ExtractionRequest(
        dataset=args.dataset, domain=args.domain, root=args.root, out=out, backbone=args.backbone,
        weights=args.weights, batch_size=args.batch_size, device=args.device, image_size=args.image_size,
        num_workers=args.num_workers, path_prefix=args.path_prefix,
    )
    # the threads are named with the result: a line before it would make an unreadable image two lines of error
    print(f"wrote {run_extraction(request, progress=not args.quiet)} ({threads})")
    return 0


PATH_PREFIX_HELP = "rewrite the absolute paths in image lists that start with OLD to start with NEW"


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="srdc-data", description="Datasets for SRDC: download, verify, split, "
                                     "extract features. See docs/datasets.md.")
    commands = parser.add_subparsers(dest="command", required=True)

    listing = commands.add_parser("list", help="the registered benchmarks, their URLs, md5 and image counts")
    listing.add_argument("--root", default=None, help="also say which domains are present under this folder")
    listing.set_defaults(run=cmd_list)

    download = commands.add_parser("download", help="download, check (md5, counts) and install a benchmark")
    download.add_argument("name", choices=sorted(BENCHMARKS), help="the benchmark")
    download.add_argument("--root", required=True, help="installs ROOT/NAME")
    download.add_argument("--archive", default=None, help="use this archive, downloaded by hand, instead")
    download.add_argument("--keep-archive", action="store_true", help="keep ROOT/.downloads/ARCHIVE afterwards")
    download.add_argument("--quiet", action="store_true", help="no progress bar")
    download.add_argument("--accept-unverified", action="store_true",
                          help="extract an archive that cannot be verified (no published or first-seen md5, a "
                               "different md5, or another layout); its md5 is printed")
    download.add_argument("--release-lists-url", "--release_lists_url", dest="release_lists_url",
                          default=RELEASE_LISTS_URL, metavar="URL",
                          help="office31: where to fetch the authors' inductive half lists from (a mirror holding "
                               "LIST/images.txt; default: their repository at the pinned commit)")
    download.set_defaults(run=cmd_download)

    verify = commands.add_parser("verify", help="check ROOT/NAME: every domain, its classes and image count")
    verify.add_argument("name", choices=sorted(BENCHMARKS), help="the benchmark")
    verify.add_argument("--root", required=True, help="the folder holding NAME (as srdc-data download --root)")
    verify.set_defaults(run=cmd_verify)

    fingerprint = commands.add_parser("fingerprint", help="an archive's md5 and file list: print, record, check")
    fingerprint.add_argument("archive", help="the archive file (.zip, .tar, .tar.gz, ...)")
    target = fingerprint.add_mutually_exclusive_group()
    target.add_argument("--out", default=None, help="write the manifest here (default: ARCHIVE.fingerprint.json)")
    target.add_argument("--check", default=None, help="compare with this recorded manifest instead of writing one")
    fingerprint.add_argument("--benchmark", default=None, choices=sorted(BENCHMARKS),
                             help="also check the md5 (published or first seen) and layout of this benchmark")
    fingerprint.set_defaults(run=cmd_fingerprint)

    split = commands.add_parser("split", help="write the inductive 50/50 split of a domain as image lists")
    split.add_argument("name", help="a dataset: a benchmark, folder or imagelist")
    split.add_argument("--domain", required=True, help="a domain name or letter (a path for folder/imagelist)")
    split.add_argument("--root", default="data", help="the folder holding the datasets (default: data)")
    split.add_argument("--seed", type=int, default=0, help="the split_seed of training (default 0)")
    split.add_argument("--out", required=True, help="folder for train.txt, test.txt, classes.txt")
    split.add_argument("--path-prefix", "--path_prefix", dest="path_prefix", default=None, metavar="OLD=NEW",
                       help=PATH_PREFIX_HELP)
    split.set_defaults(run=cmd_split)

    cache = commands.add_parser("cache", help="decode a dataset's images once into the cache runs read "
                                "(--image_cache): build it ahead of the runs")
    cache.add_argument("name", help="a dataset: a benchmark, folder or imagelist")
    cache.add_argument("--domain", action="append", default=None,
                       help="a domain name or letter (a path for folder/imagelist); repeat it; default: all")
    cache.add_argument("--root", default="data", help="the folder holding the datasets (default: data)")
    cache.add_argument("--cache", default="auto", help="auto (as --image_cache auto) or a folder")
    cache.add_argument("--image-size", "--image_size", dest="image_size", type=int, default=None,
                       help="the runs' --image_size (default: the backbone's)")
    cache.add_argument("--backbone", default="auto", help="the backbone whose transform profile the runs use")
    cache.add_argument("--augment", default="auto", choices=options()["augment"].choices,
                       help="the runs' --augment, which decides the stored image size (default: auto, the backbone's)")
    cache.add_argument("--path-prefix", "--path_prefix", dest="path_prefix", default=None, metavar="OLD=NEW",
                       help=PATH_PREFIX_HELP)
    cache.set_defaults(run=cmd_cache)

    extract = commands.add_parser("extract-features", help="backbone features of one domain into a .npz file")
    extract.add_argument("--dataset", required=True, help="a dataset: a benchmark, folder or imagelist")
    extract.add_argument("--domain", required=True, help="a domain name or letter (a path for folder/imagelist)")
    extract.add_argument("--root", default="data", help="the folder holding the datasets (default: data)")
    extract.add_argument("--out", required=True, help="the .npz file to write (features, labels)")
    extract.add_argument("--backbone", default="resnet50", help="the feature extractor (default: resnet50)")
    extract.add_argument("--weights", default="imagenet", help="imagenet, none, or a .pth file (default: imagenet)")
    extract.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int, default=64,
                         help="images per forward pass (default: 64)")
    extract.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                         help="auto: CUDA when available, else the CPU (default: auto)")
    extract.add_argument("--image-size", "--image_size", dest="image_size", type=int, default=None,
                         help="the network's input size in pixels (default: the backbone's)")
    extract.add_argument("--num-workers", "--num_workers", dest="num_workers", type=int, default=0,
                         help="data-loading worker processes (default: 0, in this process)")
    extract.add_argument("--path-prefix", "--path_prefix", dest="path_prefix", default=None, metavar="OLD=NEW",
                         help=PATH_PREFIX_HELP)
    extract.add_argument("--quiet", action="store_true", help="no progress bar")
    extract.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    extract.set_defaults(run=cmd_extract)
    return parser


def main(argv: list[str] | None = None) -> int:
    """``srdc-data``'s exit status: 0, or 2 with one ``error: ...`` line on stderr for bad input."""
    args = build_parser().parse_args(argv)
    return run_main(lambda: args.run(args))


if __name__ == "__main__":
    sys.exit(main())
