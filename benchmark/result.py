"""The result file of one cell: the contract between the runner (which writes it), the DAG's
learning-rate selection, the sparsity measurement and the analysis (which read it).

:class:`Result` is a typed record of the JSON described in docs/architecture.md ("Result JSON"):
:meth:`Result.read` validates a file and names the first problem (:class:`ResultError`), and
:meth:`Result.write` replaces the file atomically, so no reader ever sees half a result. torch-free:
the analysis reads results without importing any model code.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.cli import UserError
from benchmark.selection import SELECTION_METRIC
from benchmark.values import is_integer, is_real, parse_ratio

SCHEMA = 1  # the version of the file format; a reader refuses other versions by name
STATUSES = ("ok", "failed", "unreachable")
FINISHED = ("ok", "unreachable")  # a rerun with the same config skips these


class ResultError(UserError, ValueError):
    """A file that is not a valid result; the message names the file, the field and what is wrong."""


@dataclass
class Result:
    """One cell's outcome. The blocks keep the JSON's nesting; the properties read the facts every
    consumer needs (ratio, learning rate, validation score), each in one place."""

    status: str
    config: dict[str, Any]  # the flat run settings as given, with their ``identity``
    provenance: dict[str, Any]  # versions, git commit, device, data
    hparams: dict[str, Any] = field(default_factory=dict)  # the training settings the run used, resolved, + the method's own
    recipe: dict[str, Any] = field(default_factory=dict)  # the method's reference training recipe (absent in early files)
    error: str | None = None
    calibration: dict[str, Any] | None = None
    budget: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    perf: dict[str, Any] | None = None
    schema: int = SCHEMA

    # --- reading and writing -------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: object, source: str = "result") -> Result:
        """A validated :class:`Result` from a parsed JSON object. Raises :class:`ResultError`."""
        if not isinstance(data, Mapping):
            raise ResultError(f"{source}: not a result object (a JSON {type(data).__name__})")
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ResultError(f"{source}: unknown field(s) {', '.join(unknown)}")
        if data.get("schema") != SCHEMA:
            raise ResultError(f"{source}: schema {data.get('schema')!r}; this version reads schema {SCHEMA}")
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in data]
        if missing:
            raise ResultError(f"{source}: missing field(s) {', '.join(missing)}")
        result = cls(**data)
        result._check(source)
        return result

    @classmethod
    def read(cls, path: str | Path) -> Result:
        """The result in ``path``. Raises :class:`ResultError` for an unreadable or invalid file."""
        try:
            data = json.loads(Path(path).read_text())
        except OSError as err:
            raise ResultError(f"{path}: cannot read ({err.strerror})") from None
        except ValueError as err:
            raise ResultError(f"{path}: not JSON ({err})") from None
        return cls.from_dict(data, str(path))

    def to_dict(self) -> dict[str, Any]:
        """The JSON object: blocks a run did not reach (no metrics for a failed run, ...) are left out."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "schema"}
        return {"schema": self.schema, **{k: v for k, v in fields.items() if v is not None or k == "error"}}

    def write(self, path: str | Path) -> Path:
        """Write to a temporary file in the same folder, then rename: never a half-written result."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(self.to_dict(), f, indent=2, allow_nan=True)
            os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are shared
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    # --- the facts readers need -----------------------------------------------------------------------------
    @property
    def ratio(self) -> float | None:
        """The target ratio (None: the method's own size)."""
        return parse_ratio(self.config.get("ratio"))

    @property
    def lr(self) -> float | None:
        """The learning rate the run trained with: ``hparams.lr``, else ``config.lr`` (files written before
        ``hparams`` was recorded; None = the method's default)."""
        lr = self.hparams.get("lr", self.config.get("lr"))
        return None if lr is None else float(lr)

    @property
    def identity(self) -> dict[str, Any] | None:
        return self.config.get("identity")

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def split_metrics(self, split: str) -> dict[str, Any]:
        """The metrics of ``split`` (``test`` or ``val``); {} when the run did not finish training."""
        return dict((self.metrics or {}).get(split) or {})

    @property
    def val_score(self) -> float | None:
        """What the learning-rate choice reads: the validation score (never a test metric)."""
        value = self.split_metrics("val").get(SELECTION_METRIC)
        return None if value is None else float(value)

    @property
    def history(self) -> list[dict[str, Any]]:
        return list((self.metrics or {}).get("history") or [])

    # --- validation -----------------------------------------------------------------------------------------
    def _check(self, source: str) -> None:
        def bad(where: str, value: object, allowed: str) -> ResultError:
            return ResultError(f"{source}: {where}: got {value!r}; expected {allowed}")

        if self.status not in STATUSES:
            raise bad("status", self.status, " or ".join(STATUSES))
        for name in ("config", "hparams", "recipe", "provenance", "calibration", "budget", "metrics", "perf"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, dict):
                raise bad(name, type(value).__name__, "an object")
        for key in ("dataset", "method", "backbone"):
            if not isinstance(self.config.get(key), str):
                raise bad(f"config.{key}", self.config.get(key), "a name")
        if not is_integer(self.config.get("seed")):
            raise bad("config.seed", self.config.get("seed"), "an integer")
        try:
            self.ratio
        except ValueError as err:
            raise ResultError(f"{source}: config.ratio: {err}") from None
        if self.lr is not None and not (is_real(self.hparams.get("lr", self.config.get("lr")))):
            raise bad("hparams.lr", self.hparams.get("lr"), "a number")
        if self.status == "ok":
            self._check_finished(bad)

    def _check_finished(self, bad) -> None:
        for split in ("test", "val"):
            value = self.split_metrics(split).get(SELECTION_METRIC)
            if not is_real(value):
                raise bad(f"metrics.{split}.{SELECTION_METRIC}", value, "a number")
        achieved = (self.budget or {}).get("achieved_ratio")
        if not is_real(achieved):
            raise bad("budget.achieved_ratio", achieved, "a number")

