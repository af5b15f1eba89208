"""Generic checks of setting values, torch-free (the runner, the study config, the perf script and
the result reader share them; the analysis imports them without pulling in torch).

``shpeft`` keeps its own copies of ``is_real`` / ``is_integer``: the method library stands alone and
imports nothing from the benchmark.
"""
from __future__ import annotations

import math
import numbers

NATIVE = "native"  # the ratio of a method's own size (no target): written as this word in paths and configs
RATIO_RANGE = "a number in (0, 1]"


def is_real(x: object) -> bool:
    """A real number (Python or numpy scalar), but not a bool: ``ratio=True`` is a mistake, not 1.0."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def is_integer(x: object) -> bool:
    """An integer (Python or numpy scalar), but not a bool."""
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def is_finite(x: object) -> bool:
    """A real number that is neither NaN nor infinite."""
    return is_real(x) and math.isfinite(float(x))


def is_ratio(x: object) -> bool:
    """A trainable-weight ratio: a finite number in (0, 1] (a ratio that underflowed to 0 is not one)."""
    return is_finite(x) and 0 < float(x) <= 1


def parse_ratio(value: object) -> float | None:
    """A ratio from a flag, a config or a result file: ``native``/None -> None, else a number in (0, 1].

    The one rule for every reader of a ratio; a bad value raises ``ValueError`` saying what is allowed.
    """
    if value is None or value == NATIVE:
        return None
    number: object = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = value
    if not is_ratio(number):
        raise ValueError(f"got {value!r}; expected {RATIO_RANGE} or '{NATIVE}'")
    return float(number)
