"""The contract of every command-line entry point (``benchmark.run``, ``benchmark.data``,
``benchmark.perf``, ``benchmark.sparsity``, ``analysis``, ...): a bad input exits with status 2 and
one line, ``error: <argument or key>: <value and what is allowed>``, before any work starts; no
traceback unless ``--debug``; Ctrl-C exits with status 130 and one line. torch-free, so the checks
run before the heavy imports.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn, TypeVar

from benchmark.values import RATIO_RANGE, is_ratio

EXIT_USER_ERROR = 2  # argparse's code for a usage error
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
DEBUG_FLAG = "--debug"
T = TypeVar("T")


class UserError(Exception):
    """A problem the user can fix (a bad argument or setting, missing data or weights, an invalid
    result file): every entry point prints it as one ``error:`` line. The message says what and how."""


class UsageError(UserError, ValueError):
    """A bad command-line argument; the message names it, its value and what is allowed."""


def one_line(err: BaseException) -> str:
    """An error as one line: its message (a KeyError's without quotes), whitespace collapsed."""
    message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    return " ".join(str(message).split()) or type(err).__name__


def fail(message: str) -> NoReturn:
    """Print ``error: message`` (one line) and exit with :data:`EXIT_USER_ERROR`."""
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(EXIT_USER_ERROR)


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with its usage errors as one line (``error: argument --lr: invalid float value: 'abc'``)
    instead of the usage block; ``--help`` is unchanged. Sub-parsers inherit the class."""

    def error(self, message: str) -> NoReturn:
        fail(f"{message} (see {self.prog} --help)")


def wants_debug(argv: Sequence[str] | None) -> bool:
    """Whether ``--debug`` is among the arguments (read before parsing, so a parse error honours it too)."""
    return DEBUG_FLAG in (sys.argv[1:] if argv is None else argv)


def add_debug(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(DEBUG_FLAG, action="store_true", help="show the Python traceback of an error")


def guarded(body: Callable[[], T], user_errors: tuple[type[BaseException], ...] = (), *, debug: bool = False) -> T:
    """``body()``, with the contract applied: a :class:`UserError` (or one of ``user_errors``) becomes one
    ``error:`` line and exit 2, Ctrl-C one ``interrupted`` line and exit 130 (``debug`` re-raises both)."""
    try:
        return body()
    except (UserError, *user_errors) as err:
        if debug:
            raise
        fail(one_line(err))
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted (nothing was written for the unfinished work)", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)


# --- argparse types: each names what is allowed ---------------------------------------------------------

def _typed(convert: Callable[[str], T], ok: Callable[[T], bool], allowed: str) -> Callable[[str], T]:
    def parse(text: str) -> T:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"got {text!r}; expected {allowed}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"got {text!r}; expected {allowed}")
        return value

    parse.__name__ = allowed  # argparse names the type in its message
    return parse


def int_at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``low``."""
    return _typed(int, lambda v: v >= low, f"an integer >= {low}")


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)
ratio = _typed(float, is_ratio, RATIO_RANGE)


# --- argparse types of paths: checked without creating anything -----------------------------------------

def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (``.`` at worst for a relative path)."""
    return next((p for p in (path, *path.parents) if p.exists()), Path.cwd())


def _not_a_folder(path: Path) -> str | None:
    """Why ``path`` cannot be used as a folder (an existing file, or a path under a file), or None."""
    base = _nearest_existing(path)
    if base.is_dir():
        return None
    return "it is a file" if base == path else f"{base} is a file"


def _not_a_file(path: Path) -> str | None:
    """Why ``path`` cannot be written as a file (a folder, or a path under a file), or None."""
    return "it is a folder" if path.is_dir() else _not_a_folder(path.parent)


def _absent(kind: str, found: Callable[[Path], bool]) -> Callable[[Path], str | None]:
    """The check that a path is an existing ``kind`` (``found`` says whether it is)."""
    return lambda path: None if found(path) else (f"it is not a {kind}" if path.exists() else "it does not exist")


def _path_type(problem: Callable[[Path], str | None], allowed: str) -> Callable[[str], Path]:
    """An argparse type: the path (``~`` expanded), refused with the reason ``problem`` gives."""
    def parse(text: str) -> Path:
        path = Path(text).expanduser()
        if (why := problem(path)) is not None:
            raise argparse.ArgumentTypeError(f"got {text!r} ({why}); expected {allowed}")
        return path

    parse.__name__ = allowed
    return parse


existing_path = _path_type(_absent("file or folder", Path.exists), "an existing file or folder")
existing_file = _path_type(_absent("file", Path.is_file), "an existing file")
existing_folder = _path_type(_absent("folder", Path.is_dir), "an existing folder")
folder_path = _path_type(_not_a_folder, "a folder (existing or to be created)")
file_path = _path_type(_not_a_file, "a file path (existing or to be created)")
