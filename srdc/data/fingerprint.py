"""What an archive is, recorded and checked: its md5, size and file members (``srdc-data fingerprint``).

A :class:`Fingerprint` is written as a small JSON manifest and compared with a later copy of the archive. The
same member listing refuses members that would land outside the extraction folder (zip slip, tar slip) and
checks, before anything is extracted, that an archive holds a benchmark's layout and image counts
(:func:`layout_problems`).
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import tarfile
import zipfile
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

from srdc.data.base import one_line
from srdc.data.benchmarks import Benchmark, BenchmarkDomain
from srdc.data.images import IMAGE_EXTENSIONS
from srdc.errors import SRDCInputError

CHUNK = 1 << 20
ARCHIVE_ERRORS = (OSError, EOFError, ValueError, tarfile.TarError, zipfile.BadZipFile, zlib.error, lzma.LZMAError)
IGNORED_TOP = "__MACOSX"

Member = tuple[str, int]


class DownloadError(SRDCInputError):
    """A download, checksum, archive, extraction or verification step failed; nothing was installed."""


@dataclass(frozen=True)
class Fingerprint:
    """An archive's file name, md5, size in bytes and file members ``(name, size)`` in sorted order."""

    archive: str
    md5: str
    size: int
    members: tuple[Member, ...]


def md5_of(path: Path) -> str:
    """The md5 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.md5()
    with path.open("rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def is_unsafe_name(name: str) -> bool:
    """True for a member name that is absolute, has a drive, or climbs out with ``..`` (either slash)."""
    parts = name.replace("\\", "/").split("/")
    return name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts


def check_zip_names(archive: Path, names: list[str]) -> None:
    """Refuse a zip whose member names would land outside the extraction folder (zip slip)."""
    unsafe = [name for name in names if is_unsafe_name(name)]
    if unsafe:
        raise DownloadError(f"{archive} holds a member outside the extraction folder ({unsafe[0]!r}); refusing "
                             "it (zip slip). Delete the archive and get it from a trusted source")


def _zip_members(archive: Path) -> list[Member]:
    with zipfile.ZipFile(archive) as handle:
        entries = handle.infolist()
    check_zip_names(archive, [entry.filename for entry in entries])
    return sorted((entry.filename, entry.file_size) for entry in entries if not entry.is_dir())


def _tar_members(archive: Path) -> list[Member]:
    with tarfile.open(archive) as handle:
        entries = handle.getmembers()
    for entry in entries:
        link = entry.linkname if entry.issym() or entry.islnk() else ""
        if is_unsafe_name(entry.name) or is_unsafe_name(link):
            raise DownloadError(f"{archive} holds a member outside the extraction folder ({entry.name!r}"
                                 f"{' -> ' + repr(link) if link else ''}); refusing it (tar slip). Delete the "
                                 "archive and get it from a trusted source")
        if not (entry.isfile() or entry.isdir() or entry.issym() or entry.islnk()):
            raise DownloadError(f"{archive} holds a special file {entry.name!r} (device or fifo); refusing it. "
                                 "Delete the archive and get it from a trusted source")
    return sorted((entry.name, entry.size) for entry in entries if entry.isfile())


def archive_members(archive: Path) -> list[Member]:
    """The file members ``(name, size)`` of a zip or tar archive (any compression), sorted.

    Not an archive, a damaged one, or one with a member outside the extraction folder: :class:`DownloadError`.
    """
    if not archive.is_file():
        raise DownloadError(f"archive {archive} does not exist; give the path of the downloaded file")
    try:
        if zipfile.is_zipfile(archive):
            return _zip_members(archive)
        if tarfile.is_tarfile(archive):
            return _tar_members(archive)
    except DownloadError:
        raise
    except ARCHIVE_ERRORS as error:
        raise DownloadError(f"{archive} is damaged ({one_line(error)}); delete it and download again") from None
    raise DownloadError(f"{archive} is neither a zip nor a tar archive; delete it and download again")


def fingerprint_archive(archive: Path) -> Fingerprint:
    """The :class:`Fingerprint` of ``archive`` (its members are listed, so a damaged archive is an error)."""
    members = tuple(archive_members(archive))
    return Fingerprint(archive=archive.name, md5=md5_of(archive), size=archive.stat().st_size, members=members)


def write_fingerprint(fingerprint: Fingerprint, path: Path) -> None:
    """Write the manifest (JSON) atomically: temporary file + rename."""
    data = asdict(fingerprint)
    data["members"] = [list(member) for member in fingerprint.members]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_fingerprint(path: Path) -> Fingerprint:
    """A manifest written by :func:`write_fingerprint`; anything else is an ``SRDCInputError`` naming ``path``."""
    if not path.is_file():
        raise SRDCInputError(f"fingerprint {path} does not exist; write one with `srdc-data fingerprint ARCHIVE "
                             f"--out {path}`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        members = tuple((str(name), int(size)) for name, size in data["members"])
        return Fingerprint(archive=str(data["archive"]), md5=str(data["md5"]), size=int(data["size"]),
                           members=members)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SRDCInputError(f"fingerprint {path} is not a manifest of `srdc-data fingerprint` ({one_line(error)}); "
                             "write it again") from None


def compare_fingerprints(got: Fingerprint, recorded: Fingerprint) -> list[str]:
    """How ``got`` differs from ``recorded`` (md5, size, members): empty when they match."""
    problems = []
    if got.md5 != recorded.md5:
        problems.append(f"md5 {got.md5} != recorded {recorded.md5}")
    if got.size != recorded.size:
        problems.append(f"size {got.size} != recorded {recorded.size} bytes")
    missing = sorted(set(recorded.members) - set(got.members))
    extra = sorted(set(got.members) - set(recorded.members))
    if missing or extra:
        problems.append(f"{len(got.members)} members, recorded {len(recorded.members)}: "
                        f"{len(missing)} missing or changed (first: {missing[0][0] if missing else 'none'}), "
                        f"{len(extra)} unexpected (first: {extra[0][0] if extra else 'none'})")
    return problems


# -- the layout of a benchmark inside an archive --------------------------------------------------------------
def _visible(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return bool(parts) and parts[0] != IGNORED_TOP and not any(part.startswith(".") for part in parts)


def unwrapped_names(names: list[str]) -> list[str]:
    """The visible member names relative to the archive's single top-level folder, when there is one (the same
    unwrapping as extraction)."""
    visible = [str(PurePosixPath(name)) for name in names if _visible(name)]
    tops = {PurePosixPath(name).parts[0] for name in visible}
    if len(tops) == 1 and all(len(PurePosixPath(name).parts) > 1 for name in visible):
        top = tops.pop()
        return [str(PurePosixPath(name).relative_to(top)) for name in visible]
    return visible


def _domain_images(names: list[str], folder: str) -> int | None:
    """Images under ``folder/CLASS/...`` among ``names``; ``None`` when nothing lies under ``folder``."""
    inside = [PurePosixPath(name).relative_to(folder) for name in names if name.startswith(folder + "/")]
    if not inside:
        return None
    return sum(1 for path in inside if len(path.parts) > 1 and path.suffix.lower() in IMAGE_EXTENSIONS)


def _domain_problem(domain: BenchmarkDomain, names: list[str]) -> str | None:
    for candidate in domain.paths:
        if candidate.endswith(".txt"):
            if candidate in names:
                return None
            continue
        count = _domain_images(names, candidate)
        if count is None:
            continue
        if domain.count is not None and count != domain.count:
            return f"domain {domain.name!r} has {count} images under {candidate}/, {domain.count} expected"
        return None
    return f"domain {domain.name!r} not found (expected {' or '.join(domain.paths)})"


def layout_problems(bench: Benchmark, members: list[Member]) -> list[str]:
    """How the archive's members differ from ``bench``'s layout (each domain present, image counts of class
    folders as registered): empty when they match. Image lists are checked after extraction."""
    names = unwrapped_names([name for name, _ in members])
    return [problem for domain in bench.domains if (problem := _domain_problem(domain, names)) is not None]
