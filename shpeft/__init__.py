"""SH-PEFT: sparsity- and hybridity-inspired parameter-efficient fine-tuning.

    scores = shpeft.importance(model, loader, kind="hybrid", estimator="l1")
    mask = shpeft.select(scores, ratio=1e-4)
    model = shpeft.apply(model, mask)        # only k deltas (+ the head) are trainable
    ... train ...
    shpeft.save_adapter(model, "adapter.safetensors")
    shpeft.merge(model)                      # plain weights for inference
"""
from .api import SCORE_KINDS, importance, num_backbone_parameters, trainable_report
from .eligible import DEFAULT_PATTERNS, HEAD, eligible_parameters, in_modules
from .importance import NonFiniteError
from .io import Adapter, AdapterMismatchError, InvalidAdapterError, load_adapter, read_adapter, save_adapter
from .select import Mask, select
from .sparse import SparseDelta, SparseDeltaLinear, apply, delta_sites, merge

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_PATTERNS",
    "HEAD",
    "SCORE_KINDS",
    "Adapter",
    "AdapterMismatchError",
    "InvalidAdapterError",
    "Mask",
    "NonFiniteError",
    "SparseDelta",
    "SparseDeltaLinear",
    "apply",
    "delta_sites",
    "eligible_parameters",
    "importance",
    "in_modules",
    "load_adapter",
    "merge",
    "num_backbone_parameters",
    "read_adapter",
    "save_adapter",
    "select",
    "trainable_report",
]
