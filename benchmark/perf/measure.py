"""Measure one training step of each method (and the importance pass), side by side: the
configuration, the per-method measurement in a fresh process, repeats, and the ratios to the
references."""
from __future__ import annotations

import multiprocessing
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

import baselines
import shpeft
from benchmark.backbones import create_backbone, data_config
from benchmark.config import TrainConfig, resolve_train
from benchmark.train import TrainStep, autocast

from .memory import PeakMemory, free

NUM_CLASSES = 10
REFERENCES = ("bitfit", "lora", "full")  # every run measures these at their own sizes; ratios are relative to them
SPARSE_KNOB = "k"  # methods whose size knob is k (shpeft*, spt) run at every --ratio
DEFAULT_RATIOS = (1e-2,)  # the top of the paper's grid, where the sparse path costs the most
IMPORTANCE_ROW = "shpeft.importance"
STEPS_PER_EPOCH = 1000  # the schedule the timed steps sit in (its shape does not change a step's cost)
MEMORY_STEPS = 2  # extra steps run under the memory probe (after the timed ones: no sampling overhead there)


@dataclass(frozen=True)
class PerfConfig:
    backbone: str = "tiny_vit"  # any benchmark.backbones name: tiny_vit, clip_vit_b16, timm:<name>, ...
    batch_size: int = 64
    image_size: int | None = None  # None = the backbone's
    device: str = "cpu"
    dtype: str = "fp32"  # bf16 = torch.autocast(bfloat16)
    ratios: tuple[float, ...] = DEFAULT_RATIOS  # trainable ratios of the sparse methods
    matched: bool = False  # also run knob methods (LoRA, adapters, VPT) at every ratio
    compile: bool = False
    warmup: int = 3
    steps: int = 10
    repeats: int = 1  # measurements of every method, round-robin (steps pooled, peaks' median)
    interleave: bool = True  # time every method's steps round-robin, step by step, in one process
    clock: str = "wall"  # CPU timing: wall-clock, or "cpu" = this process's CPU time (for a loaded machine)
    importance_batches: int = 8
    seed: int = 0
    threads: int | None = None  # CPU threads (None = torch's default)

    @property
    def size(self) -> int:
        """Input size: ``image_size``, else the backbone's own."""
        return self.image_size or data_config(self.backbone)["input_size"][-1]


def build_backbone(cfg: PerfConfig, device: torch.device) -> nn.Module:
    """The configured backbone at the configured input size, random weights (speed does not depend on them)."""
    return create_backbone(cfg.backbone, NUM_CLASSES, pretrained=False, image_size=cfg.image_size).to(device)


def method_ratios(name: str, cfg: PerfConfig) -> list[float | None]:
    """Sparse methods run at every ratio, knob methods too with --matched; the rest, and the
    references besides, once at their own size (None)."""
    method = baselines.get(name)
    at_ratios = method.knob == SPARSE_KNOB or (cfg.matched and method.knob is not None)
    own_size = [None] if name in REFERENCES or not at_ratios else []
    return own_size + (list(cfg.ratios) if at_ratios else [])


def random_batch(cfg: PerfConfig, size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    x = torch.randn(cfg.batch_size, 3, size, size, generator=generator)
    y = torch.randint(0, NUM_CLASSES, (cfg.batch_size,), generator=generator)
    return x.to(cfg.device), y.to(cfg.device)


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}  # CPU-side clocks


def timed_ms(fn: Callable[[], Any], device: torch.device, clock: str = "wall") -> float:
    """Milliseconds ``fn`` takes: CUDA events on a GPU; on a CPU wall-clock time, or with
    ``clock="cpu"`` the CPU time of this process (all its threads), which other jobs on a
    shared machine barely change."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end)
    now = CLOCKS[clock]
    start_s = now()
    fn()
    return (now() - start_s) * 1000


def _state_tensors(optimizer: torch.optim.Optimizer) -> list[Tensor]:
    return [v for state in optimizer.state.values() for v in state.values() if isinstance(v, Tensor)]


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of every tensor in ``optimizer.state`` (moments and step counters)."""
    return sum(t.numel() * t.element_size() for t in _state_tensors(optimizer))


def _fresh_start(cfg: PerfConfig) -> torch.device:
    """The device, with TF32 on CUDA (as the GPU anchors), the CPU thread count set, no compiled
    code or recompile budget left from another method, and garbage collected."""
    device = torch.device(cfg.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.compile:
        torch._dynamo.reset()
    free(device)
    return device


def _random_batches(cfg: PerfConfig) -> list[tuple[Tensor, Tensor]]:
    """The two random batches every method's steps alternate over (the same for every method)."""
    generator = torch.Generator().manual_seed(cfg.seed)
    return [random_batch(cfg, cfg.size, generator) for _ in range(2)]


def _setup(cfg: PerfConfig) -> tuple[torch.device, PeakMemory, list[tuple[Tensor, Tensor]], nn.Module]:
    """Fresh device state, a memory probe made before the model exists, two random batches, the backbone."""
    device = _fresh_start(cfg)
    memory = PeakMemory(device)
    batches = _random_batches(cfg)
    torch.manual_seed(cfg.seed)
    return device, memory, batches, build_backbone(cfg, device)


class UnreachableRatio(ValueError):
    """The method cannot reach the asked ratio (the solver's note says how close it gets)."""


class _Trainer:
    """One method prepared on a fresh backbone and trained by the training loop's own step
    (benchmark.train.TrainStep: the recipe's parameter groups, clipping, schedule): ``step(i)`` runs step i."""

    def __init__(self, name: str, ratio: float | None, cfg: PerfConfig, model: nn.Module,
                 batches: list[tuple[Tensor, Tensor]], device: torch.device):
        start = time.perf_counter()
        method = baselines.get(name)
        self.prepared = baselines.prepare(method, model, ratio, batches[:1])
        if not self.prepared.reachable:  # nothing was attached: there is no step of this method to time
            raise UnreachableRatio(self.prepared.note)
        self.prepare_s = time.perf_counter() - start
        self.model = self.prepared.model.train()
        settings = resolve_train(TrainConfig(compile=cfg.compile), method.recipe)
        self.train_step = TrainStep(self.model, settings, STEPS_PER_EPOCH, no_decay=self.prepared.no_decay,
                                    device=device, autocast_on=cfg.dtype == "bf16")
        self.optimizer = self.train_step.optimizer
        self._batches = batches

    def step(self, i: int) -> None:
        self.train_step(*self._batches[i % 2])


def measure_method(name: str, ratio: float | None, cfg: PerfConfig, timed: bool = True) -> dict[str, Any]:
    """Prepare ``name`` at ``ratio`` on a fresh backbone, warm it up, time ``cfg.steps`` training steps
    (unless not ``timed``) and probe the peak memory of two more (one row; ``times`` holds every
    timed step's milliseconds)."""
    device, memory, batches, model = _setup(cfg)
    trainer = _Trainer(name, ratio, cfg, model, batches, device)
    prepared, model, optimizer, step = trainer.prepared, trainer.model, trainer.optimizer, trainer.step
    step(0)
    state_bytes = optimizer_state_bytes(optimizer)
    for i in range(1, cfg.warmup):
        step(i)
    times = [timed_ms(lambda i=i: step(i), device, cfg.clock) for i in range(cfg.steps if timed else 0)]
    live = [*model.parameters(), *model.buffers(), *_state_tensors(optimizer), *(t for b in batches for t in b)]
    with memory.track(live):
        for i in range(MEMORY_STEPS):
            step(i)
    return {
        "method": name, "knob": prepared.knob, "knob_value": prepared.knob_value,
        "target_ratio": prepared.target_ratio, "achieved_ratio": prepared.achieved_ratio,
        "reachable": prepared.reachable, "trainable": prepared.trainable, "times": times,
        "peak_mem_bytes": memory.peak, "mem_kind": memory.kind, "opt_state_bytes": state_bytes,
        "prepare_s": trainer.prepare_s, "note": prepared.note or None,
    }


def measure_importance(cfg: PerfConfig) -> dict[str, Any]:
    """Time ``shpeft.importance`` (hybrid, L1) over ``cfg.importance_batches`` batches (one row;
    ``times`` holds the milliseconds per batch)."""
    device, memory, batches, model = _setup(cfg)
    loader = [batches[i % 2] for i in range(cfg.importance_batches)]
    with autocast(device, cfg.dtype == "bf16"):
        shpeft.importance(model, loader[:1], n_batches=1)  # warm-up: kernels, allocator
        live = [*model.parameters(), *model.buffers(), *(t for b in batches for t in b)]
        with memory.track(live):
            seconds = timed_ms(lambda: shpeft.importance(model, loader, n_batches=len(loader)), device, cfg.clock) / 1000
    return {
        "method": IMPORTANCE_ROW, "knob": "batches", "knob_value": len(loader), "trainable": 0,
        "times": [seconds * 1000 / len(loader)], "peak_mem_bytes": memory.peak, "mem_kind": memory.kind,
        "opt_state_bytes": 0, "prepare_s": seconds,
        "note": f"hybrid L1 importance: {len(loader)} batches of {cfg.batch_size} in {seconds:.2f} s",
    }


def interleaved_times(todo: Sequence[tuple[str, float | None]], cfg: PerfConfig) -> dict[tuple[str, float | None], list[float]]:
    """Every job's step times, measured in one process and round-robin step by step
    (``cfg.steps x cfg.repeats`` rounds, after ``cfg.warmup`` steps of each): a shared machine's slow
    drifts and a process's luck (where its memory and threads land) then hit every method alike, so
    the ratios of the table stay steady where separate measurements scatter by 10-25%. A job that
    fails to prepare is left out (its own measurement reports the error)."""
    device = _fresh_start(cfg)
    batches = _random_batches(cfg)
    trainers = {}
    for name, ratio in todo:
        torch.manual_seed(cfg.seed)
        try:
            trainer = _Trainer(name, ratio, cfg, build_backbone(cfg, device), batches, device)
        except Exception:  # noqa: BLE001 - reported by the method's own (memory) measurement
            continue
        for i in range(cfg.warmup):
            trainer.step(i)
        trainers[(name, ratio)] = trainer
    times: dict[tuple[str, float | None], list[float]] = {job: [] for job in trainers}
    for i in range(cfg.steps * cfg.repeats):
        for job, trainer in trainers.items():
            times[job].append(timed_ms(lambda: trainer.step(i), device, cfg.clock))
    return times


def _guarded(fn: Callable[..., dict], name: str, *args: Any) -> dict[str, Any]:
    """``fn(*args)``, or a row that records the error (a failing method does not stop the run)."""
    try:
        return fn(*args)
    except UnreachableRatio as err:
        return {"method": name, "reachable": False, "note": f"unreachable: {err}"}
    except Exception as err:  # noqa: BLE001 - reported in the row's note column
        return {"method": name, "note": f"error: {type(err).__name__}: {err}"[:300]}


def _in_subprocess(fn: Callable[..., dict], *args: Any) -> dict[str, Any]:
    """``fn(*args)`` in a fresh process forked from a server that has imported this module."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(fn, *args).result()


def pool(measured: list[dict[str, Any]], batch_size: int) -> dict[str, Any]:
    """One row from the repeats of one measurement: median and min over all their steps, median peak."""
    failed = [r for r in measured if not r.get("times")]
    if failed:
        return {**failed[0], "note": failed[0].get("note") or "error: not timed"}
    times = [t for r in measured for t in r["times"]]
    median = statistics.median(times)
    return {
        **{k: v for k, v in measured[0].items() if k != "times"},
        "ms_per_step": median, "ms_min": min(times), "ms_per_image": median / batch_size,
        "img_per_s": batch_size / median * 1000, "repeats": len(measured),
        "peak_mem_bytes": int(statistics.median(r["peak_mem_bytes"] for r in measured)),
    }


def add_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Step time and peak memory of each training row relative to each reference (BitFit, LoRA and
    full fine-tuning at their own sizes)."""
    refs = {r["method"]: r for r in rows
            if r["method"] in REFERENCES and r.get("target_ratio") is None and "ms_per_step" in r}
    for row in rows:
        for ref in REFERENCES:
            ok = ref in refs and "ms_per_step" in row and row["method"] != IMPORTANCE_ROW
            row[f"time_vs_{ref}"] = row["ms_per_step"] / refs[ref]["ms_per_step"] if ok else None
            row[f"mem_vs_{ref}"] = row["peak_mem_bytes"] / refs[ref]["peak_mem_bytes"] if ok else None
    return rows


def jobs(cfg: PerfConfig, methods: Sequence[str] | None = None) -> list[tuple[str, float | None]]:
    """(method, ratio) pairs to measure: the references first, then every method at its ratios."""
    names = list(dict.fromkeys([*REFERENCES, *(methods or baselines.names())]))
    for name in names:
        baselines.get(name)  # unknown name: fail before measuring anything
    return [(name, ratio) for name in names for ratio in method_ratios(name, cfg)]


def run(cfg: PerfConfig, methods: Sequence[str] | None = None, isolate: bool | None = None) -> list[dict[str, Any]]:
    """Measure ``methods`` (default: all registered) plus the references, and the importance pass.
    With ``cfg.interleave`` (and no ``cfg.compile``) the step times come from :func:`interleaved_times` and the peak memory
    from one measurement per method; without, every method is measured ``cfg.repeats`` times,
    round-robin. ``isolate`` (default: on CPU) runs each measurement in its own process."""
    todo: list[tuple[str, float | None]] = jobs(cfg, methods)
    if cfg.importance_batches > 0:
        todo.append((IMPORTANCE_ROW, None))
    isolate = torch.device(cfg.device).type == "cpu" if isolate is None else isolate
    call = _in_subprocess if isolate else (lambda fn, *args: fn(*args))

    def measure(name: str, ratio: float | None) -> dict[str, Any]:
        if name == IMPORTANCE_ROW:
            return _guarded(call, name, measure_importance, cfg)
        return _guarded(call, name, measure_method, name, ratio, cfg)

    measured: dict[tuple[str, float | None], list[dict[str, Any]]] = {job: [] for job in todo}
    # compiled models of several methods in one process would share dynamo's recompile budget
    # (one compiled forward per model, 8 by default), so --compile measures the methods separately
    interleave = cfg.interleave and not cfg.compile
    if interleave:  # times from one round-robin process; memory from one measurement per method
        steps = call(interleaved_times, [job for job in todo if job[0] != IMPORTANCE_ROW], cfg)
        for job in todo:
            if job[0] == IMPORTANCE_ROW:
                measured[job] += [measure(*job) for _ in range(cfg.repeats)]
                continue
            row = _guarded(call, job[0], measure_method, *job, cfg, False)
            measured[job].append({**row, "times": steps.get(job, [])} if "times" in row else row)
    else:
        for _ in range(cfg.repeats):
            for job in todo:
                measured[job].append(measure(*job))
    rows = [pool(runs, cfg.batch_size) for runs in measured.values()]
    if interleave:  # every method's steps came from cfg.repeats rounds of cfg.steps
        rows = [{**row, "repeats": cfg.repeats} if "repeats" in row else row for row in rows]
    return add_ratios(rows)
