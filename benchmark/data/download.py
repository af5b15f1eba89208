"""Fetch one file with checksum verification, failing fast and actionably when offline.

A file is only ever used after its checksum matched (or, for archives without a published
checksum, after the zip integrity test). A mismatching file is renamed to ``*.corrupt`` (and
the rename is reported), so it is never silently reused. One attempt per call, with a short
socket timeout: on a machine without network this fails in seconds and the error says which
URL to fetch by hand, under which file name, and where to put it.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import urllib.request
import warnings
import zipfile
from pathlib import Path

from tqdm.auto import tqdm

TIMEOUT_S = 5.0  # socket timeout for connecting and for each read
CHUNK = 1 << 20


class DatasetUnavailableError(RuntimeError):
    """The dataset's files are missing and could not be fetched; the message says how to get them."""


def file_hash(path: Path, algorithm: str) -> str:
    """Hex digest of ``path`` (read in chunks: MedMNIST+ files reach several GB)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _expected(md5: str | None, sha256: str | None) -> tuple[str, str] | None:
    if sha256:
        return "sha256", sha256.lower()
    return ("md5", md5.lower()) if md5 else None


def quarantine(path: Path, reason: str, bad: Path | None = None) -> Path:
    """Rename a bad file to ``bad`` (default ``<path>.corrupt``) so it is never used, and warn saying so."""
    bad = bad or path.with_name(path.name + ".corrupt")
    os.replace(path, bad)
    warnings.warn(f"{path}: {reason}; moved it to {bad}", stacklevel=3)
    return bad


def manual_message(url: str, dest: Path, checksum: tuple[str, str] | None = None, hint: str = "") -> str:
    """How to place ``dest`` by hand: the URL, the exact file name and the exact local path."""
    lines = [f"Download {url} by hand and save it as the file {dest.name!r} at", f"    {dest}"]
    if checksum:
        lines.append(f"(its {checksum[0]} must be {checksum[1]})")
    lines.append("then run the same command again.")
    return "\n".join(lines + ([hint] if hint else []))


def fetch(url: str, dest: Path, *, md5: str | None = None, sha256: str | None = None,
          timeout: float = TIMEOUT_S, hint: str = "") -> Path:
    """Return ``dest``, downloading ``url`` there first unless a copy with the right checksum
    is already present. Raises :class:`DatasetUnavailableError` when it cannot."""
    dest = Path(dest)
    checksum = _expected(md5, sha256)
    if dest.exists():
        if checksum is None or file_hash(dest, checksum[0]) == checksum[1]:
            return dest
        quarantine(dest, f"{checksum[0]} does not match {checksum[1]}; downloading it again")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(f"{dest.name}.{os.getpid()}.part")  # per process: concurrent runs never mix
    try:
        _stream(url, part, timeout, dest.name)
    except (OSError, ValueError, http.client.HTTPException) as err:  # URLError, timeouts, resets
        part.unlink(missing_ok=True)
        raise DatasetUnavailableError(
            f"could not download {url} ({err}).\n" + manual_message(url, dest, checksum, hint)) from err
    if checksum is not None and (actual := file_hash(part, checksum[0])) != checksum[1]:
        bad = quarantine(part, f"downloaded {checksum[0]} {actual} != expected {checksum[1]}",
                         dest.with_name(dest.name + ".corrupt"))
        raise DatasetUnavailableError(
            f"the download of {url} is corrupt: {checksum[0]} {actual}, expected {checksum[1]} "
            f"(kept as {bad}).\n" + manual_message(url, dest, checksum, hint))
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


def extract_zip(archive: Path, dest: Path, folder: str, hint: str = "") -> Path:
    """Unpack ``archive`` so that its content ends up in ``dest/folder`` (whether or not the
    archive wraps it in that folder), after the zip integrity test; returns ``dest/folder``.
    A damaged archive is moved aside and reported. Extraction goes through a temporary folder
    so an interrupted run never leaves a half-filled ``dest/folder``."""
    tmp = dest / f".unzip-{archive.stem}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as zf:
            if (bad_member := zf.testzip()) is not None:
                raise zipfile.BadZipFile(f"member {bad_member} fails its CRC check")
            zf.extractall(tmp)
    except zipfile.BadZipFile as err:
        bad = quarantine(archive, f"not a valid zip archive ({err})")
        raise DatasetUnavailableError(f"{archive} is damaged ({err}); moved it to {bad}. {hint}".strip()) from err
    shutil.rmtree(tmp / "__MACOSX", ignore_errors=True)  # macOS resource forks, not data
    entries = list(tmp.iterdir())
    content = entries[0] if len(entries) == 1 and entries[0].is_dir() and entries[0].name == folder else tmp
    os.replace(content, dest / folder)
    shutil.rmtree(tmp, ignore_errors=True)
    return dest / folder
