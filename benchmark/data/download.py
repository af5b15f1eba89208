"""Fetch one file with checksum verification, failing fast and actionably when offline; unpack
archives without ever leaving a half-written folder.

A downloaded file is only used after its checksum matched (or, for archives without a published
checksum, after the zip integrity test), unless the caller accepts a mismatch explicitly. A
mismatching download is moved aside to a unique ``*.corrupt-<hex>`` name (never overwriting an
earlier one, and the move is reported). One attempt per call, with a short socket timeout: on a
machine without network this fails in seconds and says which URL to fetch by hand, under which
file name, and where to put it.

An archive is checked before anything is extracted: the uncompressed total of its members may
not exceed :func:`unpack_limit` (a multiple of its own size and of the dataset's declared size);
an extraction that fails, or that does not hold the dataset's layout, is removed.

A *mirror* (``mirror=`` or the ``SHPEFT_DATA_MIRROR`` environment variable: a local folder or a
base URL) replaces every download host: a file is looked up there by its official file name
(the last component of its URL), so a cluster can stage the archives once.
"""
from __future__ import annotations

import http.client
import os
import urllib.parse
import urllib.request
import uuid
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .errors import ChecksumMismatchError, CorruptFileError, DatasetUnavailableError, OversizedArchiveError
from .files import CHUNK, file_hash, is_hidden, remove, replace_dir, temporary

TIMEOUT_S = 5.0  # socket timeout for connecting and for each read
MIRROR_ENV = "SHPEFT_DATA_MIRROR"
ACCEPT_FLAG = "--accept-checksum-mismatch"  # the CLI option (API: accept_checksum_mismatch=True)
UNPACK_RATIO = 100  # an archive may unpack to this multiple of its size: images hardly compress, zeros ~1000x
UNPACK_FLOOR = 16_000_000  # bytes any archive may unpack to (a small archive of text compresses well)
EXPECTED_MARGIN = 3  # an archive may unpack to this multiple of its dataset's declared unpacked size

__all__ = ["DatasetUnavailableError", "check_unpack_size", "extract_layout", "extract_zip", "fetch", "file_hash",
           "mirrored", "quarantine"]


def official_name(url: str) -> str:
    """The file name a URL serves (its last path component, unquoted)."""
    return urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])


def mirrored(url: str, mirror: str | Path | None) -> str:
    """``url`` redirected to ``mirror`` (a folder or a base URL), keeping its file name."""
    if not mirror:
        return url
    name = urllib.parse.quote(official_name(url))
    base = str(mirror)
    if "://" not in base:
        base = Path(base).expanduser().resolve().as_uri()
    return f"{base.rstrip('/')}/{name}"


def _expected(md5: str | None, sha256: str | None) -> tuple[str, str] | None:
    if sha256:
        return "sha256", sha256.lower()
    return ("md5", md5.lower()) if md5 else None


def quarantine(path: Path, reason: str, name: str = "") -> Path:
    """Move a bad download to a new unique ``<name>.corrupt-<hex>`` (``name`` defaults to the
    file's; never over an earlier one) so it is never used, and warn saying so. Only for files
    this package downloaded."""
    bad = path.with_name(f"{name or path.name}.corrupt-{uuid.uuid4().hex[:8]}")
    os.replace(path, bad)
    warnings.warn(f"{path}: {reason}; moved it to {bad}", stacklevel=3)
    return bad


def manual_message(url: str, dest: Path, checksum: tuple[str, str] | None = None, hint: str = "") -> str:
    """How to place ``dest`` by hand: the URL, the exact file name and the exact local path."""
    lines = [f"Download {url} by hand and save it as the file {dest.name!r} at", f"    {dest}"]
    if checksum:
        lines.append(f"(its {checksum[0]} must be {checksum[1]})")
    lines.append(f"then run the same command again (or put it in a mirror folder, see {MIRROR_ENV}).")
    return "\n".join(lines + ([hint] if hint else []))


def fetch(url: str, dest: Path, *, md5: str | None = None, sha256: str | None = None,
          timeout: float = TIMEOUT_S, hint: str = "", mirror: str | Path | None = None,
          accept_mismatch: bool = False) -> Path:
    """Return ``dest``, downloading ``url`` (from ``mirror`` if given) there first unless a copy
    with the right checksum is already present. With ``accept_mismatch`` a file whose checksum
    differs is kept (with a warning) instead of refused. Raises :class:`DatasetUnavailableError`
    when the file cannot be had, :class:`ChecksumMismatchError` when it is not the official one."""
    dest = Path(dest)
    checksum = _expected(md5, sha256)
    if dest.exists():
        if checksum is None or file_hash(dest, checksum[0]) == checksum[1]:
            return dest
        if accept_mismatch:
            warnings.warn(f"{dest}: {checksum[0]} differs from the official {checksum[1]}; used as accepted")
            return dest
        quarantine(dest, f"{checksum[0]} does not match {checksum[1]}; downloading it again")
    source = mirrored(url, mirror)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = temporary(dest)  # per process and call: concurrent runs never mix
    try:
        _stream(source, part, timeout, dest.name)
    except (OSError, ValueError, http.client.HTTPException) as err:  # URLError, timeouts, resets
        remove(part)
        where = f"{source} (mirror of {url})" if source != url else url
        raise DatasetUnavailableError(
            f"could not download {where} ({err}).\n" + manual_message(url, dest, checksum, hint)) from err
    if checksum is not None and (actual := file_hash(part, checksum[0])) != checksum[1]:
        if not accept_mismatch:
            bad = quarantine(part, f"downloaded {checksum[0]} {actual} != expected {checksum[1]}", dest.name)
            raise ChecksumMismatchError(
                f"the download of {source} is not the official file: {checksum[0]} {actual}, expected "
                f"{checksum[1]} (kept as {bad}). If you mean to use it, pass {ACCEPT_FLAG}.\n"
                + manual_message(url, dest, checksum, hint))
        warnings.warn(f"{source}: {checksum[0]} {actual} differs from the official {checksum[1]}; used as accepted")
    os.replace(part, dest)
    return dest


def _stream(url: str, part: Path, timeout: float, desc: str) -> None:
    """Copy ``url`` to ``part`` with a progress bar; a short transfer raises (truncation)."""
    with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        done = 0
        with tqdm(total=total, unit="B", unit_scale=True, desc=desc, disable=None) as bar:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                done += len(chunk)
                bar.update(len(chunk))
    if total is not None and done != total:
        raise http.client.IncompleteRead(b"", total - done)


def unpack_limit(archive: Path, expected_bytes: int | None = None) -> int:
    """The most bytes ``archive`` may unpack to: :data:`UNPACK_RATIO` x its own size (at least
    :data:`UNPACK_FLOOR`), and no more than :data:`EXPECTED_MARGIN` x the dataset's declared
    unpacked size ``expected_bytes``, when it declares one."""
    limit = max(UNPACK_RATIO * archive.stat().st_size, UNPACK_FLOOR)
    return min(limit, EXPECTED_MARGIN * expected_bytes) if expected_bytes else limit


def check_unpack_size(archive: Path, expected_bytes: int | None = None) -> None:
    """Refuse ``archive`` if its members add up to more than :func:`unpack_limit` (a zip bomb, or
    not this dataset). Reads only the archive's directory; nothing is extracted."""
    with zipfile.ZipFile(archive) as zf:
        total = sum(member.file_size for member in zf.infolist())
    if total > (limit := unpack_limit(archive, expected_bytes)):
        dataset = f" for a dataset of about {_mb(expected_bytes)}" if expected_bytes else ""
        raise OversizedArchiveError(f"{archive} ({_mb(archive.stat().st_size)}) would unpack to {_mb(total)}, more "
                                    f"than the {_mb(limit)} allowed{dataset}: not an archive of this dataset")


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _set_aside(archive: Path, reason: str, downloaded: bool) -> str:
    """Quarantine a bad archive we ``downloaded`` (a user's is never touched); what to say about it."""
    return f"; moved it to {quarantine(archive, reason)}" if downloaded else ""


def _unpack(archive: Path, tmp: Path, expected_bytes: int | None) -> None:
    """Size check, zip integrity test, then extraction into ``tmp``."""
    check_unpack_size(archive, expected_bytes)
    with zipfile.ZipFile(archive) as zf:
        if (bad_member := zf.testzip()) is not None:
            raise zipfile.BadZipFile(f"member {bad_member} fails its CRC check")
        zf.extractall(tmp)


def _content(tmp: Path) -> Path:
    """The extracted data in ``tmp``: its single top-level folder if there is one, else ``tmp``;
    OS metadata (``__MACOSX/``, ``.DS_Store``) removed."""
    for entry in list(tmp.iterdir()):
        if is_hidden(Path(entry.name)):
            remove(entry)
    entries = list(tmp.iterdir())
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else tmp


def extract_zip(archive: Path, dest: Path, folder: str, hint: str = "", *, downloaded: bool = True,
                expected_bytes: int | None = None) -> Path:
    """Unpack ``archive`` into ``dest/folder`` (an archive holding a single top-level folder is
    unwrapped) after the size check (:func:`check_unpack_size`, ``expected_bytes`` being the
    dataset's unpacked size if declared) and the zip integrity test; returns ``dest/folder``.
    Extraction goes through a unique temporary folder, removed on any failure, and replaces any
    older ``dest/folder`` in one rename, so no run leaves a half-filled one. A refused archive we
    ``downloaded`` is moved aside; a user's archive is never touched."""
    target = dest / folder
    tmp = temporary(target)
    try:
        _unpack(archive, tmp, expected_bytes)
        replace_dir(_content(tmp), target)
    except OversizedArchiveError as err:
        raise OversizedArchiveError(f"{err}{_set_aside(archive, str(err), downloaded)}. {hint}".strip()) from None
    except (zipfile.BadZipFile, EOFError, ValueError) as err:
        moved = _set_aside(archive, f"not a valid zip archive ({err})", downloaded)
        raise CorruptFileError(f"{archive} is damaged ({err}){moved}. {hint}".strip()) from err
    finally:
        remove(tmp)
    return target


def extract_layout(archive: Path, dest: Path, folder: str, find: Callable[[Path], Path | None], hint: str = "",
                   **options: Any) -> Path | None:
    """:func:`extract_zip` (same ``options``), then ``find`` the dataset's layout in what it
    unpacked; an extraction without it is removed again (it is not the dataset) and None returned."""
    unpacked = extract_zip(archive, dest, folder, hint, **options)
    found = find(unpacked)
    if found is None:
        remove(unpacked)
    return found
