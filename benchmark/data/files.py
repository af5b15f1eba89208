"""File-system rules every writer and reader of the data layer shares.

- Temporaries: :func:`temporary` names a sibling ``.<name>.tmp-<pid>-<hex>`` (unique per
  process and call, hidden from every scan); finished work is moved into place with one
  ``os.replace``. :func:`clean_stale` removes the temporaries of processes that no longer
  exist (a ``kill -9`` in the middle of a download, an extraction or a decode).
- Hidden and OS metadata entries (dot-files and dot-folders, ``__MACOSX/``, ``Thumbs.db``) are
  never data: :func:`is_hidden`, :func:`walk`.
- A source's :func:`fingerprint` (file list, sizes, mtimes) tells when a cache is stale.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

CHUNK = 1 << 20
OS_METADATA = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini"})
_TEMPORARY = re.compile(r"^\..+\.tmp-(\d+)-[0-9a-f]{8}$")


def is_hidden(relative: Path) -> bool:
    """Whether any component of ``relative`` is a dot-entry or OS metadata (never data)."""
    return any(part.startswith(".") or part in OS_METADATA for part in relative.parts)


def walk(folder: Path) -> Iterator[Path]:
    """Every regular file under ``folder`` that is not hidden, in sorted order."""
    for path in sorted(folder.rglob("*")):
        if not is_hidden(path.relative_to(folder)) and path.is_file():
            yield path


def temporary(target: Path) -> Path:
    """A unique hidden sibling of ``target`` to build it in before ``os.replace``-ing it there."""
    return target.with_name(f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def clean_stale(folder: Path, recursive: bool = False) -> list[Path]:
    """Remove the temporaries under ``folder`` whose process is gone; returns what was removed."""
    if not folder.is_dir():
        return []
    removed = []
    for path in (folder.rglob(".*") if recursive else folder.glob(".*")):
        match = _TEMPORARY.match(path.name)
        if match and int(match.group(1)) != os.getpid() and not _alive(int(match.group(1))):
            remove(path)
            removed.append(path)
    return removed


def remove(path: Path) -> None:
    """Delete a file or a folder tree (missing is fine)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def replace_dir(tmp: Path, target: Path) -> None:
    """Move the finished folder ``tmp`` to ``target``, replacing any older ``target``: the old one
    is first renamed aside, so ``target`` is always either the old or the new complete folder."""
    old = temporary(target)
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    remove(old)


_DIGESTS: dict[tuple[str, int, int, int, int], str] = {}  # (algorithm, dev, inode, size, mtime) -> hex


def file_hash(path: Path, algorithm: str = "md5") -> str:
    """Hex digest of ``path``, read in chunks (MedMNIST+ files reach several GB) and remembered
    for an unchanged file (same inode, size and mtime, which a rename keeps), so verifying a
    download and then recording its checksum reads it once."""
    stat = Path(path).stat()
    key = (algorithm, stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.new(algorithm)
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def fingerprint(inputs: Sequence[Path]) -> dict[str, object]:
    """What a cache was built from: the ``inputs`` (files or folders), their number of files and
    a digest of the path, size and mtime of every file that is not hidden under them. Any file
    added, removed, replaced or touched changes the digest."""
    digest = hashlib.sha256()
    count = 0
    for top in inputs:
        files = [top] if top.is_file() else list(walk(top)) if top.is_dir() else []
        for path in files:
            stat = path.stat()
            name = path.name if path == top else path.relative_to(top).as_posix()
            digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        count += len(files)
    return {"inputs": [str(p) for p in inputs], "files": count, "digest": digest.hexdigest()}
