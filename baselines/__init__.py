"""PEFT methods, one module each, behind one registry (see baselines/README.md).

Every module in this package is imported on start-up, so a new file that calls
``register`` is available by name with no other change.
"""
import importlib
import pkgutil

from .registry import (
    HEAD_LR,
    TOLERANCE,
    PeftMethod,
    Prepared,
    Recipe,
    freeze_all_but_head,
    get,
    names,
    prepare,
    register,
    train_only,
)

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "registry":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "HEAD_LR", "TOLERANCE", "PeftMethod", "Prepared", "Recipe", "freeze_all_but_head", "get", "names",
    "prepare", "register", "train_only",
]
