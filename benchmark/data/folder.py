"""Image-folder datasets: how a user adds data of their own, and the scanning the real loaders share.

Layout: ``<raw>/<class>/**/*.{png,jpg,jpeg,bmp,tif,tiff}`` with classes = the sub-folders in
sorted order, and optionally ``<raw>/splits/{train,val,test}.txt`` (one path per line, relative
to ``<raw>``, its first component being the class folder; val.txt may be left out, then val is
carved out of train; an image may be listed in one split file only, and every line must stay
inside ``<raw>``: no absolute paths, no ``..``). Without split files the images are split
70/10/20, seeded and stratified.
Hidden entries and OS metadata (dot-folders, ``.DS_Store``, ``__MACOSX/``) are never classes or images.

``register_folder("mydata")`` reads ``<root>/mydata/raw``; ``register_folder("mydata", path)``
reads ``path``; the name ``folder:<path>`` works without registering.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from itertools import combinations
from pathlib import Path, PurePosixPath

from .base import SPLITS, RawSplit, Source
from .errors import DatasetUnavailableError, SplitFileError
from .files import is_hidden, walk
from .images import is_image
from .registry import DatasetSpec, register, register_resolver
from .splits import STRATIFIED

SPLIT_DIR = "splits"
LAYOUT = ("<raw>/<class>/*.png|jpg (one folder per class), optionally <raw>/splits/{train,val,test}.txt "
          "listing paths relative to <raw>")


def scan(folders: Sequence[Path], exclude: Callable[[Path], bool] = lambda p: False) -> RawSplit:
    """The images under each of ``folders`` (recursively, sorted), labelled by folder index."""
    paths, labels = [], []
    for label, folder in enumerate(folders):
        found = [p for p in walk(folder) if is_image(p) and not exclude(p)]
        paths += found
        labels += [label] * len(found)
    return RawSplit(paths, labels)


def numbered_lines(path: Path) -> list[tuple[int, str]]:
    """The non-empty, stripped lines of a split file, with their line numbers (from 1)."""
    lines = enumerate(path.read_text().splitlines(), start=1)
    return [(number, line.strip()) for number, line in lines if line.strip()]


def read_list(path: Path) -> list[str]:
    """The non-empty, stripped lines of a split file."""
    return [line for _, line in numbered_lines(path)]


def require_files(dataset: str, paths: Sequence[Path], listed_in: str) -> None:
    """Raise, naming a few of them, if any of ``paths`` (listed in ``listed_in``) is missing."""
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise DatasetUnavailableError(
            f"{dataset}: {len(missing)} image(s) listed in {listed_in} are missing, e.g. {missing[:3]}")


def _entry(where: str, line: str, classes: Sequence[str]) -> PurePosixPath:
    """A split-file line as a path inside the folder whose first component is a class folder;
    ``where`` (``file:line``) names it in the error otherwise."""
    entry = PurePosixPath(line)
    if entry.is_absolute() or ".." in entry.parts:
        raise SplitFileError(f"{where}: {line!r} leads outside the dataset folder; list paths relative to it, "
                             f"without '..'")
    if entry.parts[0] not in classes:
        raise SplitFileError(f"{where}: {line!r}: first path components [{entry.parts[0]!r}] are not class folders "
                             f"{list(classes)}")
    return entry


def _read_split_file(raw: Path, path: Path, classes: Sequence[str]) -> RawSplit:
    entries = [_entry(f"{path}:{number}", line, classes) for number, line in numbered_lines(path)]
    files = [raw / e for e in entries]
    require_files(raw.name, files, str(path))
    return RawSplit(files, [classes.index(e.parts[0]) for e in entries])


def check_disjoint(raw: Path, splits: Mapping[str, RawSplit], lists: Mapping[str, Path]) -> None:
    """Refuse an image listed in two split files: one in both train and test leaks the test set."""
    for a, b in combinations(splits, 2):
        shared = sorted(set(splits[a].images) & set(splits[b].images))
        if shared:
            names = [p.relative_to(raw).as_posix() for p in shared[:3]]
            raise SplitFileError(f"{len(shared)} image(s) are listed in both {lists[a]} and {lists[b]}, e.g. "
                                 f"{names}: an image belongs to one split only")


def load_folder(raw: Path) -> Source:
    """Read an image-folder dataset at ``raw`` (see the module docstring for the layout)."""
    if not raw.is_dir():
        raise DatasetUnavailableError(f"no image folder at {raw}. Expected layout: {LAYOUT}")
    classes = sorted(d.name for d in raw.iterdir() if d.is_dir() and d.name != SPLIT_DIR and not is_hidden(Path(d.name)))
    if not classes:
        raise DatasetUnavailableError(f"{raw} has no class sub-folders. Expected layout: {LAYOUT}")
    lists = {s: raw / SPLIT_DIR / f"{s}.txt" for s in SPLITS if (raw / SPLIT_DIR / f"{s}.txt").is_file()}
    if lists:
        splits = {s: _read_split_file(raw, path, classes) for s, path in lists.items()}
        check_disjoint(raw, splits, lists)
    else:
        splits = {"all": scan([raw / c for c in classes])}
    return Source(splits, tuple(classes), raw, info={"split_files": sorted(lists)}, index_files=tuple(lists.values()))


def folder_spec(name: str, path: str | Path | None = None, *, modality: str = "unspecified") -> DatasetSpec:
    """Spec of an image folder at ``path`` (default: the raw folder of ``name`` under the data root)."""
    where = Path(path).expanduser().resolve() if path is not None else None
    return DatasetSpec(
        name=name, modality=modality, num_classes=0, class_names=(),
        splits=f"split files in <raw>/splits/ if present, else {STRATIFIED}",
        source=f"user image folder at {where or f'<root>/{name}/raw'}; layout {LAYOUT}",
        status="user", loader=lambda request: load_folder(request.source or request.raw), location=where,
    )


def register_folder(name: str, path: str | Path | None = None, *, modality: str = "unspecified") -> DatasetSpec:
    """Register (or re-register) the image folder at ``path`` as dataset ``name``."""
    return register(folder_spec(name, path, modality=modality), replace=True)


register_resolver("folder", lambda path: folder_spec(f"folder:{path}", path))
