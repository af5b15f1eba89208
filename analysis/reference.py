"""The paper's reported numbers, as data (``paper_reference.yaml``)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

PAPER_REFERENCE = Path(__file__).with_name("paper_reference.yaml")


def _read(path: str | Path | None) -> dict:
    return yaml.safe_load(Path(path or PAPER_REFERENCE).read_text())


def load_reference(path: str | Path | None = None) -> pd.DataFrame:
    """Columns method, dataset, metric, value (percent; NaN = not known), source."""
    df = pd.DataFrame(_read(path)["results"], columns=["method", "dataset", "metric", "value", "source"])
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    return df


def dataset_statuses(statuses: dict[str, str] | None = None, path: str | Path | None = None) -> dict[str, str]:
    """Dataset -> status (confirmed / likely / stand-in / ...): the reference file's defaults,
    overridden by ``statuses`` (e.g. the dataset registry's)."""
    return {**(_read(path).get("datasets") or {}), **(statuses or {})}


def paper_method(reference: pd.DataFrame | None = None) -> str:
    """The benchmark method the paper's numbers are for (the one method of the reference file)."""
    methods = (load_reference() if reference is None else reference)["method"].dropna().unique()
    if len(methods) != 1:
        raise ValueError(f"the paper reference must name exactly one method, found {sorted(methods)}")
    return str(methods[0])
