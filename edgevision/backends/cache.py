"""The on-disk cache of built engines (TensorRT plans, timing caches, QDQ models).

Location: $EDGEVISION_CACHE, else ~/.cache/edgevision/engines. An entry is one file named by the sha256 of its
key fields (ONNX bytes hash, GPU, compute capability, TensorRT version, precision, shapes/profile, ...), so a
change in any field builds anew. Files hold a header (magic, payload length, payload sha256) in front of the
payload: a truncated or corrupt entry reads as missing and is rebuilt. Writes go to a temporary file in the
same folder, then os.replace: readers (other processes included) never see half a file.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import tempfile
from pathlib import Path

log = logging.getLogger("edgevision")

_MAGIC = b"EVCACHE1"
_HEADER = struct.Struct("<8sQ32s")  # magic, payload length, payload sha256


def cache_dir() -> Path:
    return Path(os.environ.get("EDGEVISION_CACHE") or Path.home() / ".cache" / "edgevision" / "engines")


def cache_key(**fields) -> str:
    """sha256 of the fields as canonical JSON: equal fields, equal key; any field changed, another key."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def entry_path(kind: str, key: str, suffix: str = "bin") -> Path:
    return cache_dir() / f"{kind}-{key[:32]}.{suffix}"


def read_entry(path: Path) -> bytes | None:
    """The payload of a cache file, or None when it is missing, truncated or corrupt (a warning is logged)."""
    try:
        blob = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        log.warning("edgevision cache: cannot read %s (%s); rebuilding", path, e)
        return None
    if len(blob) >= _HEADER.size:
        magic, n, digest = _HEADER.unpack_from(blob)
        payload = blob[_HEADER.size:]
        if magic == _MAGIC and n == len(payload) and hashlib.sha256(payload).digest() == digest:
            return payload
    log.warning("edgevision cache: %s is corrupt or truncated; rebuilding it", path)
    return None


def write_entry(path: Path, payload: bytes) -> Path:
    """Write atomically: a temporary file in the same folder, flushed, then renamed over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = bytes(payload)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_HEADER.pack(_MAGIC, len(payload), hashlib.sha256(payload).digest()))
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def cached(path: Path, build, validate=None) -> tuple[bytes, bool]:
    """(payload, hit): the entry at `path` if present, intact and accepted by validate(payload) (when given),
    else build() written to `path`."""
    payload = read_entry(path)
    if payload is not None and (validate is None or validate(payload)):
        return payload, True
    if payload is not None:
        log.warning("edgevision cache: %s is stale (rejected on load); rebuilding it", path)
    payload = bytes(build())
    write_entry(path, payload)
    return payload, False
