"""A signed study storage: the files of a sweep folder that Ray unpickles or the harness trusts on ``--resume``
(:data:`srdc.trialfiles.TRUSTED_FILES`: Tune's ``tuner.pkl``, its experiment state, the searcher's state, the
launch file) are signed with an HMAC-SHA256 whose key lives outside the storage, and ``--resume`` verifies them
before Ray reads anything.

The key is ``$SRDC_STORAGE_KEY`` when it is set, else the per-user key file ``~/.config/srdc/storage.key``
(``$XDG_CONFIG_HOME/srdc/storage.key``), created with mode 0600 on first use. The signatures are in the sweep
folder's :data:`~srdc.trialfiles.SIGNATURES_FILE`: for each file, the digests of its last :data:`KEPT` versions
the driver wrote (Tune copies its state to the storage in the background: a driver killed between two copies
leaves the previous version, which still verifies). The driver signs what it wrote itself: the launch file, the
``tuner.pkl`` it made, and Tune's state in the driver's own staging folder as Tune writes it
(:class:`srdc.harness.tuner.SignState`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

from srdc.errors import SRDCInputError
from srdc.trialfiles import SIGNATURES_FILE, read_storage_file, trusted_files, write_storage_file

KEY_ENV = "SRDC_STORAGE_KEY"
KEPT = 3  # the versions of a file whose digests are kept
TRUST_OPTION = "--trust-storage"


def key_file() -> Path:
    """The per-user key file: ``$XDG_CONFIG_HOME/srdc/storage.key`` (``~/.config`` by default)."""
    config = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(config) / "srdc" / "storage.key"


def storage_key() -> bytes:
    """The signing key: ``$SRDC_STORAGE_KEY``, else the key file's (a random one written 0600 on first use)."""
    if os.environ.get(KEY_ENV):
        return os.environ[KEY_ENV].encode()
    path = key_file()
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another driver made it just now
            return path.read_bytes().strip()
        with os.fdopen(descriptor, "w") as out:
            out.write(secrets.token_hex(32) + "\n")
    return path.read_bytes().strip()


def digest(data: bytes, key: bytes) -> str:
    """The HMAC-SHA256 of ``data`` under ``key``, in hex."""
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def read_signatures(folder: str) -> dict[str, list[str]] | None:
    """The digests kept for each file of the sweep folder ``folder``; ``None`` when it has no readable
    signatures file."""
    data = read_storage_file(folder, SIGNATURES_FILE)
    if data is None:
        return None
    try:
        found = json.loads(data)
    except ValueError:
        return None
    if not isinstance(found, dict):
        return None
    return {name: [item for item in digests if isinstance(item, str)]
            for name, digests in found.items() if isinstance(digests, list)}


def sign_files(folder: str, files: dict[str, bytes]) -> None:
    """Add the digests of ``files`` (name -> the bytes the driver wrote) to the signatures of the sweep folder
    ``folder``, keeping each file's last :data:`KEPT`."""
    key = storage_key()
    signatures = read_signatures(folder) or {}
    for name, data in files.items():
        kept = [item for item in signatures.get(name, []) if item != digest(data, key)]
        signatures[name] = [*kept, digest(data, key)][-KEPT:]
    write_storage_file(folder, SIGNATURES_FILE, json.dumps(signatures, indent=1, sort_keys=True).encode())


def sign_stored(folder: str, names: list[str]) -> None:
    """Sign the files ``names`` of the sweep folder ``folder`` as they are in the storage now (those the driver
    has just written there itself)."""
    files = {name: read_storage_file(folder, name) for name in names}
    sign_files(folder, {name: data for name, data in files.items() if data is not None})


def verify_storage(folder: str) -> None:
    """Before ``--resume`` reads the sweep folder ``folder``: every trusted file in it must carry a signature of
    this key; anything else is one :class:`SRDCInputError` naming the file."""
    names = trusted_files(folder)
    if not names:
        return
    signatures = read_signatures(folder)
    fix = (f"resume with the key that signed it (${KEY_ENV}, or the key file {key_file()} of the machine that ran "
           f"it), or pass {TRUST_OPTION} if you trust this storage")
    if signatures is None:
        raise SRDCInputError(f"{folder}/{SIGNATURES_FILE} is missing: the study's files cannot be verified; {fix}")
    key = storage_key()
    for name in names:
        data = read_storage_file(folder, name)
        if data is not None and digest(data, key) not in signatures.get(name, []):
            raise SRDCInputError(f"{folder}/{name} does not match its signature (changed outside this harness, or "
                                 f"signed with another key); nothing was read from it; {fix}")
