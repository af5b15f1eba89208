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
from typing import NoReturn, TypeVar

EXIT_USER_ERROR = 2  # argparse's code for a usage error
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
DEBUG_FLAG = "--debug"
T = TypeVar("T")


class UsageError(ValueError):
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


def guarded(body: Callable[[], T], user_errors: tuple[type[BaseException], ...], *, debug: bool = False) -> T:
    """``body()``, with the contract applied: a ``user_errors`` exception becomes one ``error:`` line and
    exit 2, Ctrl-C one ``interrupted`` line and exit 130 (``debug`` re-raises both)."""
    try:
        return body()
    except (UsageError, *user_errors) as err:
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


positive_int = _typed(int, lambda v: v >= 1, "an integer >= 1")
non_negative_int = _typed(int, lambda v: v >= 0, "an integer >= 0")
