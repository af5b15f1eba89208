"""Sparse training: only k selected weights are trainable, stored as k-element deltas.

For ``nn.Linear`` layers, :class:`SparseDeltaLinear` runs one dense matmul with W + delta in
the forward pass and, in the backward pass, computes the input gradient plus the k delta
gradients, grad_delta[e] = sum over tokens t of grad_out[t, row_e] * x[t, col_e]: no full-size
weight gradient and no full-size optimizer state; the forward saves only the input columns that
the deltas touch. The delta gradient has two exact routes (:data:`DELTA_GRAD_ROUTES`), and each
layer takes the cheaper one for its shape, its deltas, the token count and the device (:func:`pick_route`):

* ``sampled``: one dot product over the tokens per delta, with ``torch.sparse.sampled_addmm``
  (an SDDMM: k x tokens multiply-adds and no k x tokens temporaries; CPU);
* ``block``: the dense gradient of the touched columns, ``grad_out^T @ x_cols`` (one GEMM in the
  compute dtype, out x cols, freed at once), then a gather of the k deltas.

Any other parameter (e.g. ``nn.MultiheadAttention.in_proj_weight`` and ``out_proj``) gets the same delta
through a parametrisation (correct everywhere, but autograd forms the dense weight
gradient there before scattering it to the delta).
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from .eligible import HEAD, in_modules
from .select import Mask


@dataclass(frozen=True)
class RouteCosts:
    """Relative time per unit of work of the delta-gradient routes on one device type.

    Per token, ``block`` costs ``out_features * cols * block_mac`` (the GEMM) plus ``cols * copy``
    when only some columns are touched (their gather); ``sampled`` costs ``k * sampled_delta`` (the
    dot products) plus ``(rows + cols) * copy`` (the touched gradient rows and input columns
    transposed into the layout the kernel reads), plus ``sampled_call`` per call (building the
    sparse pattern). ``sampled_delta=None`` leaves only ``block``.
    """

    block_mac: float
    copy: float
    sampled_delta: float | None = None
    sampled_call: float = 0.0


# CPU: from microbenchmarks of the GEMM, the sampled_addmm kernel and transposed copies (2-core x86,
# fp32, 3152 tokens), checked per layer with `python -m benchmark.perf.routes` (docs/performance.md). Other devices
# (CUDA): block only -- a GEMM there is far cheaper than per-delta work, and sampled_addmm has not
# been timed on a GPU (see docs/performance.md).
ROUTE_COSTS: dict[str, RouteCosts] = {
    "cpu": RouteCosts(block_mac=1.0, copy=30.0, sampled_delta=6.0, sampled_call=2e6),
}
DEFAULT_ROUTE_COSTS = RouteCosts(block_mac=1.0, copy=30.0)


def pick_route(shape: tuple[int, int], rows: int, cols: int, k: int, tokens: int, device_type: str) -> str:
    """The cheaper delta-gradient route for a weight of ``shape`` (out, in) with ``k`` deltas in
    ``rows`` x ``cols`` of it, for an input of ``tokens`` rows."""
    out_features, in_features = shape
    costs = ROUTE_COSTS.get(device_type, DEFAULT_ROUTE_COSTS)
    estimates = {"block": tokens * (out_features * cols * costs.block_mac + (cols < in_features) * cols * costs.copy)}
    if costs.sampled_delta is not None and not torch.compiler.is_compiling():  # compilers do not trace CSR
        estimates["sampled"] = tokens * (k * costs.sampled_delta + (rows + cols) * costs.copy) + costs.sampled_call
    return min(estimates, key=estimates.__getitem__)


def _compute_dtype(x: Tensor) -> torch.dtype:
    """The dtype ``F.linear`` would compute in here (the autocast dtype when autocast is on)."""
    device_type = x.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return x.dtype


def _weight_plus_delta(weight: Tensor, indices: Tensor, delta: Tensor, dtype: torch.dtype) -> Tensor:
    """(weight + scatter(delta)) cast to ``dtype``; the sum is taken in the weight's precision."""
    merged = weight.detach().to(dtype, copy=True)
    updated = weight.detach().view(-1)[indices] + delta.detach().to(weight.dtype)
    merged.view(-1)[indices] = updated.to(dtype)
    return merged


def _transposed_columns(t: Tensor, cols: Tensor) -> Tensor:
    """``t[:, cols].T`` of a 2-D tensor, contiguous (``cols`` sorted and unique, so all columns is ``t.T``).

    The rows of the transposed view are gathered in one pass: on CPU up to 3x faster than a column
    gather followed by a transposed copy (for 192-wide inputs), and the same values."""
    if cols.numel() == t.shape[1]:
        return t.t().contiguous()
    return t.t().index_select(0, cols)


class _DeltaLayout(NamedTuple):
    """Where a layer's k deltas sit: its touched ``rows`` and ``cols`` (sorted, unique), each delta's
    column among them (``col_pos``) and position in the out x cols block (``block_pos``), and the
    CSR row pointers of the deltas over rows x cols (``crow``). Deltas are in row-major order."""

    rows: Tensor
    cols: Tensor
    col_pos: Tensor
    block_pos: Tensor
    crow: Tensor


class _Route(NamedTuple):
    """One exact way to the delta gradient: what the forward saves of the input (2-D, tokens x
    features, already in the compute dtype), and the gradient from that and grad_out."""

    save: Callable[[Tensor, _DeltaLayout], Tensor]
    grad: Callable[[Tensor, Tensor, _DeltaLayout], Tensor]


def _columns(x: Tensor, layout: _DeltaLayout) -> Tensor:
    """The touched input columns, tokens x cols (``x`` itself when every column is touched: no copy)."""
    return x if layout.cols.numel() == x.shape[1] else x.index_select(1, layout.cols)


def _block_grad(go: Tensor, x_cols: Tensor, layout: _DeltaLayout) -> Tensor:
    """Dense gradient of the touched columns (one GEMM, compute dtype), then the k deltas of it."""
    return (go.t() @ x_cols).view(-1)[layout.block_pos]


def _sampled_save(x: Tensor, layout: _DeltaLayout) -> Tensor:
    """The touched input columns transposed, cols x tokens: the layout sampled_addmm reads."""
    return _transposed_columns(x, layout.cols)


def _sampled_grad(go: Tensor, x_cols_t: Tensor, layout: _DeltaLayout) -> Tensor:
    """One dot product over the tokens per delta (SDDMM), in float32 at least (no bf16 CPU kernel)."""
    dtype = torch.promote_types(go.dtype, torch.float32)
    go_rows_t = _transposed_columns(go, layout.rows).to(dtype)
    zeros = torch.zeros(layout.col_pos.numel(), dtype=dtype, device=go.device)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta", UserWarning)
        pattern = torch.sparse_csr_tensor(layout.crow, layout.col_pos, zeros,
                                          (layout.rows.numel(), layout.cols.numel()), check_invariants=False)
    # mat2 is passed transposed: its transpose, the saved contiguous x_cols_t, is what the kernel reads
    return torch.sparse.sampled_addmm(pattern, go_rows_t, x_cols_t.to(dtype).t(), beta=0.0).values()


DELTA_GRAD_ROUTES: dict[str, _Route] = {
    "block": _Route(_columns, _block_grad),
    "sampled": _Route(_sampled_save, _sampled_grad),
}


class _SparseDeltaLinearFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, delta, indices, route, *layout):
        dtype, x_dtype = _compute_dtype(x), x.dtype
        w = _weight_plus_delta(weight, indices, delta, dtype)
        b = None if bias is None else bias.detach().to(dtype)
        x = x.detach().to(dtype)
        with torch.autocast(x.device.type, enabled=False):
            out = F.linear(x, w, b)
        saved = DELTA_GRAD_ROUTES[route].save(x.reshape(-1, x.shape[-1]), _DeltaLayout(*layout))
        ctx.save_for_backward(saved, weight, delta, indices, *layout)
        ctx.route = route
        ctx.x_dtype, ctx.dtype, ctx.has_bias = x_dtype, dtype, bias is not None
        return out

    @staticmethod
    def backward(ctx, grad_out):
        saved, weight, delta, indices, *layout = ctx.saved_tensors
        grad_x = grad_bias = grad_delta = None
        go = grad_out.to(ctx.dtype)
        if ctx.needs_input_grad[0]:
            w = _weight_plus_delta(weight, indices, delta, ctx.dtype)
            grad_x = (go @ w).to(ctx.x_dtype)
            del w
        go = go.reshape(-1, go.shape[-1])
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = go.sum(0, dtype=torch.float32).to(weight.dtype)
        if ctx.needs_input_grad[3]:
            grad_delta = DELTA_GRAD_ROUTES[ctx.route].grad(go, saved, _DeltaLayout(*layout)).to(delta.dtype)
        return grad_x, None, grad_bias, grad_delta, None, None, *(None for _ in layout)


class SparseDelta(nn.Module):
    """k trainable deltas at fixed flat ``indices`` of a weight of ``shape``.

    Used as a parametrisation ``W -> W + scatter(delta)``, and inside SparseDeltaLinear.
    """

    def __init__(self, shape: torch.Size, indices: Tensor, device: torch.device | None = None):
        super().__init__()
        indices = torch.sort(indices.to(device=device, dtype=torch.long)).values  # row-major (masks are sorted)
        if indices.numel() and (indices.min() < 0 or indices.max() >= shape.numel()):
            raise ValueError(f"indices out of range for a weight of shape {tuple(shape)}")
        self.shape = torch.Size(shape)
        self.register_buffer("indices", indices)
        self.delta = nn.Parameter(torch.zeros(indices.numel(), device=device, dtype=torch.float32))

    def forward(self, weight: Tensor) -> Tensor:
        return weight.flatten().index_add(0, self.indices, self.delta.to(weight.dtype)).view_as(weight)

    def extra_repr(self) -> str:
        return f"k={self.indices.numel()}, shape={tuple(self.shape)}"


class SparseDeltaLinear(nn.Module):
    """A frozen ``nn.Linear`` plus trainable deltas on k of its weights.

    ``route`` forces a delta-gradient route of :data:`DELTA_GRAD_ROUTES`; None (default) lets
    :func:`pick_route` choose per call from the layer's shape, deltas, token count and device.
    """

    def __init__(self, base: nn.Linear, indices: Tensor, route: str | None = None):
        super().__init__()
        if route is not None and route not in DELTA_GRAD_ROUTES:
            raise ValueError(f"unknown route {route!r}; known: {sorted(DELTA_GRAD_ROUTES)}")
        self.base = base.requires_grad_(False)
        self.route = route
        self._picked: dict[tuple[int, str, bool], str] = {}
        weight = base.weight
        self.sparse = SparseDelta(weight.shape, indices, weight.device)
        row, col = self.sparse.indices // weight.shape[1], self.sparse.indices % weight.shape[1]
        rows, row_counts = torch.unique_consecutive(row, return_counts=True)
        cols, col_pos = torch.unique(col, return_inverse=True)
        crow = torch.zeros(rows.numel() + 1, dtype=torch.long, device=weight.device)
        torch.cumsum(row_counts, 0, out=crow[1:])
        for name, value in (("delta_rows", rows), ("delta_cols", cols), ("col_pos", col_pos),
                            ("block_pos", row * cols.numel() + col_pos), ("crow", crow)):
            self.register_buffer(name, value, persistent=False)

    def layout(self) -> _DeltaLayout:
        return _DeltaLayout(self.delta_rows, self.delta_cols, self.col_pos, self.block_pos, self.crow)

    def _route_for(self, tokens: int, device_type: str) -> str:
        """The forced route, else :func:`pick_route`'s choice, remembered per (tokens, device type)."""
        if self.route is not None:
            return self.route
        key = (tokens, device_type, torch.compiler.is_compiling())
        if key not in self._picked:
            self._picked[key] = pick_route(self.sparse.shape, self.delta_rows.numel(), self.delta_cols.numel(),
                                           self.sparse.indices.numel(), tokens, device_type)
        return self._picked[key]

    def forward(self, x: Tensor) -> Tensor:
        route = self._route_for(x.numel() // x.shape[-1], x.device.type)
        return _SparseDeltaLinearFn.apply(
            x, self.base.weight, self.base.bias, self.sparse.delta, self.sparse.indices, route, *self.layout(),
        )

    def merged(self) -> nn.Linear:
        """The plain linear layer with the deltas folded into its weight."""
        with torch.no_grad():
            self.base.weight.copy_(self.sparse(self.base.weight))
        return self.base


def apply(model: nn.Module, mask: Mask, *, train_extra: Iterable[str] = HEAD) -> nn.Module:
    """Freeze ``model`` except the masked weights (as deltas) and the ``train_extra`` modules.

    Works in place and returns ``model``. ``train_extra`` are module-name prefixes that stay
    fully trainable (the classification head by default).
    """
    params = dict(model.named_parameters())
    for name, shape in mask.shapes.items():
        if name not in params:
            raise ValueError(f"mask names {name!r}, which is not a parameter of this model")
        if params[name].shape != shape:
            raise ValueError(
                f"mask shape {tuple(shape)} does not match {name!r} of shape {tuple(params[name].shape)}"
            )
    model.requires_grad_(False)
    for name, indices in mask.indices.items():
        if indices.numel() == 0:
            continue
        module_name, _, param_name = name.rpartition(".")
        module = model.get_submodule(module_name)
        # plain nn.Linear only: subclasses such as MultiheadAttention.out_proj are read
        # directly by their owner (out_proj.weight), so they must keep their weight attribute
        if type(module) is nn.Linear and param_name == "weight":
            model.set_submodule(module_name, SparseDeltaLinear(module, indices))
        else:
            weight = getattr(module, param_name)
            site = SparseDelta(weight.shape, indices, weight.device)
            parametrize.register_parametrization(module, param_name, site, unsafe=True)
    extra = tuple(train_extra)
    for name, p in model.named_parameters():
        if in_modules(name, extra):
            p.requires_grad_(True)
    return model


def delta_sites(model: nn.Module) -> dict[str, SparseDelta]:
    """Map from the tuned weight's original name (e.g. ``blocks.0.attn.qkv.weight``) to its site."""
    sites = {}
    for name, module in model.named_modules():
        if isinstance(module, SparseDeltaLinear):
            sites[f"{name}.weight"] = module.sparse
        elif isinstance(module, SparseDelta) and ".parametrizations." in name:
            owner, _, rest = name.partition(".parametrizations.")
            sites[f"{owner}.{rest.rpartition('.')[0]}"] = module
    return sites


def merge(model: nn.Module) -> nn.Module:
    """Fold every delta into its weight and restore plain modules (in place, returns model)."""
    for name, module in list(model.named_modules()):
        if isinstance(module, SparseDeltaLinear):
            model.set_submodule(name, module.merged())
        elif parametrize.is_parametrized(module):
            for param_name in list(module.parametrizations.keys()):
                if any(isinstance(p, SparseDelta) for p in module.parametrizations[param_name]):
                    parametrize.remove_parametrizations(module, param_name, leave_parametrized=True)
                    getattr(module, param_name).requires_grad_(False)
    return model
