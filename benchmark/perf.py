"""Speed and memory of one training step for every registered PEFT method.

    python benchmark/perf.py --backbone tiny --device cpu
    python benchmark/perf.py --backbone vit_b16 --device cuda --dtype bf16 --batch-size 128 [--compile]

For each method: a fresh backbone (random weights: speed does not depend on them),
``baselines.prepare`` with one random calibration batch, AdamW (fused on CUDA), then
warm-up steps and measured steps of a full training step (forward, loss, backward,
optimizer step, zero_grad) on random inputs. Reported: median step time (CUDA events on
GPU, perf_counter on CPU), images/s, peak memory of two further steps counted like
``torch.cuda.max_memory_allocated`` (CUDA: that, above the level before the model was built;
CPU: the live tensors' bytes plus the growth of the anonymous resident memory, sampled every
millisecond), trainable parameters, optimizer-state bytes, and each method's time and memory
relative to BitFit and full fine-tuning of the same run (both are
always measured). On CPU every method runs in its own process (forked from a server that has
imported torch), so memory cannot leak between methods; on CUDA peak stats are reset. The
SH-PEFT importance pass (``shpeft.importance`` over n batches) is timed too.
Results: a printed table, and CSV + Markdown under ``results/perf/``.
"""
from __future__ import annotations

import argparse
import csv
import ctypes
import ctypes.util
import gc
import multiprocessing
import os
import shlex
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import baselines
import shpeft
from benchmark.backbones import create_backbone
from benchmark.provenance import provenance

NUM_CLASSES = 10
REFERENCES = ("bitfit", "full")  # every run measures these; ratios are relative to them
SPARSE_KNOB = "k"  # methods whose size knob is k (shpeft*, spt) always run at --ratio
BACKBONES = {"tiny": "tiny_vit", "vit_b16": "clip_vit_b16"}  # short name -> benchmark.backbones name
DEFAULT_RATIO = {"tiny": 1e-2, "vit_b16": 1e-4}
DEFAULT_IMAGE_SIZE = {"tiny": 32, "vit_b16": 224}
IMPORTANCE_ROW = "shpeft.importance"
MEMORY_STEPS = 2  # extra steps run under the memory probe (after the timed ones: no sampling overhead there)
SAMPLE_S = 0.001  # CPU memory sampling period
_LIBC = ctypes.CDLL(ctypes.util.find_library("c")) if sys.platform.startswith("linux") else None
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
COLUMNS = (
    "method", "knob", "knob_value", "target_ratio", "achieved_ratio", "reachable", "trainable",
    "ms_per_step", "ms_min", "img_per_s", "peak_mem_bytes", "mem_kind", "opt_state_bytes",
    "prepare_s", "time_vs_bitfit", "mem_vs_bitfit", "time_vs_full", "mem_vs_full", "note",
)


@dataclass(frozen=True)
class PerfConfig:
    backbone: str = "tiny"
    batch_size: int = 64
    image_size: int | None = None  # None = the backbone's (32 tiny, 224 vit_b16)
    device: str = "cpu"
    dtype: str = "fp32"  # bf16 = torch.autocast(bfloat16)
    ratio: float | None = None  # None = 1e-2 tiny, 1e-4 vit_b16
    matched: bool = False  # also run knob methods (LoRA, adapters, VPT) at --ratio
    compile: bool = False
    warmup: int = 3
    steps: int = 10
    importance_batches: int = 8
    seed: int = 0
    threads: int | None = None  # CPU threads (None = torch's default)

    @property
    def size(self) -> int:
        return self.image_size or DEFAULT_IMAGE_SIZE[self.backbone]

    @property
    def sparse_ratio(self) -> float:
        return self.ratio if self.ratio is not None else DEFAULT_RATIO[self.backbone]


def build_backbone(name: str, device: torch.device) -> nn.Module:
    """The benchmark's backbone by its short name, random weights (speed does not depend on them)."""
    return create_backbone(BACKBONES[name], NUM_CLASSES, pretrained=False).to(device)


def method_ratio(name: str, cfg: PerfConfig) -> float | None:
    """Sparse methods run at the sparse ratio; knob methods too with --matched; the rest native."""
    method = baselines.get(name)
    if method.knob == SPARSE_KNOB or (cfg.matched and method.knob is not None):
        return cfg.sparse_ratio
    return None


def random_batch(cfg: PerfConfig, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    x = torch.randn(cfg.batch_size, 3, cfg.size, cfg.size, generator=generator)
    y = torch.randint(0, NUM_CLASSES, (cfg.batch_size,), generator=generator)
    return x.to(cfg.device), y.to(cfg.device)


def autocast(cfg: PerfConfig) -> torch.autocast:
    device_type = torch.device(cfg.device).type
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=cfg.dtype == "bf16")


def train_step(model: Callable, optimizer: torch.optim.Optimizer, batch: tuple[Tensor, Tensor], cfg: PerfConfig) -> None:
    """Forward, loss, backward, optimizer step, zero_grad."""
    x, y = batch
    with autocast(cfg):
        loss = F.cross_entropy(model(x).float(), y)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def timed_ms(fn: Callable[[], Any], device: torch.device) -> float:
    """Milliseconds ``fn`` takes: CUDA events on a GPU, perf_counter on a CPU."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end)
    start_s = time.perf_counter()
    fn()
    return (time.perf_counter() - start_s) * 1000


def tensor_bytes(tensors: Iterable[Tensor]) -> int:
    """Bytes of the distinct storages behind ``tensors``."""
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


class PeakMemory:
    """Peak memory of a block, counted like ``torch.cuda.max_memory_allocated``.

    CUDA: max_memory_allocated during the block minus memory_allocated when the probe was made
    (before the model was built). CPU: the bytes of the ``live`` tensors at the start of the
    block (model, optimizer state, inputs: counted exactly), plus the largest growth of the
    process's anonymous resident memory (resident - shared pages of /proc/self/statm: heap and
    tensors, not library pages; Linux) over its level at the start, sampled every millisecond by
    a thread. Freed heap memory is returned to the OS first (glibc ``malloc_trim``), so it cannot
    hide that growth.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.kind = "cuda_max_allocated" if device.type == "cuda" else "cpu_live_tensors+rss_anon_growth"
        self._baseline = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
        self.peak = 0

    @staticmethod
    def _rss_anon() -> int:
        resident, shared = Path("/proc/self/statm").read_text().split()[1:3]
        return (int(resident) - int(shared)) * PAGE_BYTES

    def _sample(self, stop: threading.Event, found: list[int]) -> None:
        while not stop.wait(SAMPLE_S):
            found[0] = max(found[0], self._rss_anon())

    @contextmanager
    def track(self, live: Iterable[Tensor]) -> Iterator[None]:
        """Measure the peak of the block into :attr:`peak`."""
        _free(self.device)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            yield
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self._baseline
            return
        live_bytes, start = tensor_bytes(live), self._rss_anon()
        stop, found = threading.Event(), [start]
        sampler = threading.Thread(target=self._sample, args=(stop, found), daemon=True)
        sampler.start()
        try:
            yield
        finally:
            stop.set()
            sampler.join()
        self.peak = live_bytes + max(found[0], self._rss_anon()) - start


def _free(device: torch.device) -> None:
    """Collect garbage and give cached / freed memory back (CUDA cache, glibc heap)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif _LIBC is not None:
        _LIBC.malloc_trim(0)


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
    _free(device)
    return device


def measure_method(name: str, cfg: PerfConfig) -> dict[str, Any]:
    """Prepare ``name`` on a fresh backbone and time ``cfg.steps`` training steps (one row)."""
    device = _fresh_start(cfg)
    memory = PeakMemory(device)
    generator = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    batches = [random_batch(cfg, generator) for _ in range(2)]
    model = build_backbone(cfg.backbone, device)
    start = time.perf_counter()
    prepared = baselines.prepare(baselines.get(name), model, method_ratio(name, cfg), batches[:1])
    prepare_s = time.perf_counter() - start
    model = prepared.model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4,
                                  fused=device.type == "cuda")
    step_model = torch.compile(model) if cfg.compile else model

    def step(i: int) -> None:
        train_step(step_model, optimizer, batches[i % 2], cfg)

    step(0)
    state_bytes = optimizer_state_bytes(optimizer)
    for i in range(1, cfg.warmup):
        step(i)
    times = [timed_ms(lambda i=i: step(i), device) for i in range(cfg.steps)]
    live = [*model.parameters(), *model.buffers(), *_state_tensors(optimizer), *(t for b in batches for t in b)]
    with memory.track(live):
        for i in range(MEMORY_STEPS):
            step(i)
    median = statistics.median(times)
    return {
        "method": name, "knob": prepared.knob, "knob_value": prepared.knob_value,
        "target_ratio": prepared.target_ratio, "achieved_ratio": prepared.achieved_ratio,
        "reachable": prepared.reachable, "trainable": prepared.trainable,
        "ms_per_step": median, "ms_min": min(times), "img_per_s": cfg.batch_size / median * 1000,
        "peak_mem_bytes": memory.peak, "mem_kind": memory.kind, "opt_state_bytes": state_bytes,
        "prepare_s": prepare_s, "note": prepared.note or None,
    }


def measure_importance(cfg: PerfConfig) -> dict[str, Any]:
    """Time ``shpeft.importance`` (hybrid, L1) over ``cfg.importance_batches`` batches (one row)."""
    device = _fresh_start(cfg)
    memory = PeakMemory(device)
    generator = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    batches = [random_batch(cfg, generator) for _ in range(2)]
    loader = [batches[i % 2] for i in range(cfg.importance_batches)]
    model = build_backbone(cfg.backbone, device)
    with autocast(cfg):
        shpeft.importance(model, loader[:1], n_batches=1)  # warm-up: kernels, allocator
        live = [*model.parameters(), *model.buffers(), *(t for b in batches for t in b)]
        with memory.track(live):
            seconds = timed_ms(lambda: shpeft.importance(model, loader, n_batches=len(loader)), device) / 1000
    per_batch_ms = seconds * 1000 / len(loader)
    return {
        "method": IMPORTANCE_ROW, "knob": "batches", "knob_value": len(loader), "trainable": 0,
        "ms_per_step": per_batch_ms, "ms_min": per_batch_ms, "img_per_s": cfg.batch_size / per_batch_ms * 1000,
        "peak_mem_bytes": memory.peak, "mem_kind": memory.kind, "opt_state_bytes": 0, "prepare_s": seconds,
        "note": f"hybrid L1 importance: {len(loader)} batches in {seconds:.2f} s",
    }


def _guarded(fn: Callable[..., dict], name: str, *args: Any) -> dict[str, Any]:
    """``fn(*args)``, or a row that records the error (a failing method does not stop the run)."""
    try:
        return fn(*args)
    except Exception as err:  # noqa: BLE001 - reported in the row's note column
        return {"method": name, "note": f"error: {type(err).__name__}: {err}"[:300]}


def _in_subprocess(fn: Callable[..., dict], *args: Any) -> dict[str, Any]:
    """``fn(*args)`` in a fresh process forked from a server that has imported this module."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["benchmark.perf"])
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(fn, *args).result()


def add_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Step time and peak memory of each training row relative to BitFit and full fine-tuning."""
    refs = {r["method"]: r for r in rows if r["method"] in REFERENCES and "ms_per_step" in r}
    for row in rows:
        for ref in REFERENCES:
            ok = ref in refs and "ms_per_step" in row and row["method"] != IMPORTANCE_ROW
            row[f"time_vs_{ref}"] = row["ms_per_step"] / refs[ref]["ms_per_step"] if ok else None
            row[f"mem_vs_{ref}"] = row["peak_mem_bytes"] / refs[ref]["peak_mem_bytes"] if ok else None
    return rows


def run(cfg: PerfConfig, methods: Sequence[str] | None = None, isolate: bool | None = None) -> list[dict[str, Any]]:
    """Measure ``methods`` (default: all registered) plus BitFit and full fine-tuning, and the
    importance pass. ``isolate`` (default: on CPU) runs each in its own process."""
    names = list(dict.fromkeys([*REFERENCES, *(methods or baselines.names())]))
    for name in names:
        baselines.get(name)  # unknown name: fail before measuring anything
    isolate = torch.device(cfg.device).type == "cpu" if isolate is None else isolate
    call = _in_subprocess if isolate else (lambda fn, *args: fn(*args))
    rows = [_guarded(call, name, measure_method, name, cfg) for name in names]
    if cfg.importance_batches > 0:
        rows.append(_guarded(call, IMPORTANCE_ROW, measure_importance, cfg))
    return add_ratios(rows)


def _num(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _count(n: int | None) -> str:
    if n is None:
        return ""
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.1f} k" if n >= 1e3 else str(n)


def _bytes(n: int | None) -> str:
    if n is None:
        return ""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """One line per row: knob, trainable, median and min ms/step, img/s, peak memory, optimizer
    state, and the median step time and peak memory relative to BitFit and full fine-tuning."""
    head = ["method", "knob", "trainable", "ms/step", "min ms", "img/s", "peak mem", "opt state",
            "time/BitFit", "mem/BitFit", "time/full", "mem/full", "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [
            r["method"], f"{r['knob']}={r['knob_value']}" if r.get("knob") else "", _count(r.get("trainable")),
            _num(r.get("ms_per_step"), ".1f"), _num(r.get("ms_min"), ".1f"), _num(r.get("img_per_s"), ".0f"), _bytes(r.get("peak_mem_bytes")),
            _bytes(r.get("opt_state_bytes")), _num(r.get("time_vs_bitfit"), ".2f"), _num(r.get("mem_vs_bitfit"), ".2f"),
            _num(r.get("time_vs_full"), ".2f"), _num(r.get("mem_vs_full"), ".2f"), r.get("note") or "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def header(cfg: PerfConfig, command: str) -> dict[str, Any]:
    """Command, device, versions, git commit, date and the measurement settings."""
    prov = provenance(torch.device(cfg.device))
    versions = prov["versions"]
    settings = {k: v for k, v in asdict(cfg).items() if k != "device"}
    return {
        "command": command, "device": prov["device"], "torch": versions["torch"], "timm": versions["timm"],
        "peft": versions["peft"], "git_commit": prov["git_commit"], "git_dirty": prov["git_dirty"],
        "date": prov["started"], **settings, "image_size": cfg.size, "ratio": cfg.sparse_ratio,
        "threads": cfg.threads or torch.get_num_threads(), "tf32": torch.device(cfg.device).type == "cuda",
        "memory": "peak of two training steps (CUDA: max_memory_allocated above the level before the "
                  "model was built; CPU: live tensor bytes + growth of anonymous resident memory, sampled every 1 ms)",
    }


def output_stem(cfg: PerfConfig) -> str:
    """``<backbone>_<device>_<dtype>_b<batch>[_compile]``."""
    return f"{cfg.backbone}_{torch.device(cfg.device).type}_{cfg.dtype}_b{cfg.batch_size}" + ("_compile" if cfg.compile else "")


def write_outputs(rows: list[dict[str, Any]], meta: dict[str, Any], out_dir: Path, stem: str) -> tuple[Path, Path]:
    """``<stem>.csv`` (``# key: value`` header lines, then one row per method) and ``<stem>.md``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / f"{stem}.csv", out_dir / f"{stem}.md"
    with csv_path.open("w", newline="") as f:
        f.writelines(f"# {k}: {v}\n" for k, v in meta.items())
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    lines = [f"# Training-step performance: {stem}", ""]
    lines += [f"- {k}: `{v}`" if k == "command" else f"- {k}: {v}" for k, v in meta.items()]
    md_path.write_text("\n".join([*lines, "", markdown_table(rows), ""]))
    return csv_path, md_path


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python benchmark/perf.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", choices=sorted(BACKBONES), default="tiny")
    p.add_argument("--methods", help="comma-separated registered methods (default: all); bitfit and full are always added")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--image-size", type=int, help="input size (default: 32 tiny, 224 vit_b16)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu, cuda, cuda:N")
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help="bf16 = bfloat16 autocast")
    p.add_argument("--ratio", type=float, help="sparse methods' trainable ratio (default: 1e-2 tiny, 1e-4 vit_b16)")
    p.add_argument("--matched", action="store_true", help="run knob methods (LoRA, adapters, VPT) at --ratio too")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--warmup", type=int, default=3, help="warm-up steps (the first also fills the optimizer state)")
    p.add_argument("--steps", type=int, default=10, help="measured steps (median reported)")
    p.add_argument("--importance-batches", type=int, default=8, help="batches of the timed importance pass (0: skip)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="CPU threads (default: torch's; 1 is steadier on a shared machine)")
    p.add_argument("--isolate", action=argparse.BooleanOptionalAction,
                   help="one process per method (default: on CPU; on CUDA peak stats are reset instead)")
    p.add_argument("--out-dir", type=Path, default=Path("results/perf"))
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    if args.warmup < 1 or args.steps < 1:
        raise SystemExit("--warmup and --steps must be >= 1")
    cfg = PerfConfig(
        backbone=args.backbone, batch_size=args.batch_size, image_size=args.image_size, device=args.device,
        dtype=args.dtype, ratio=args.ratio, matched=args.matched, compile=args.compile, warmup=args.warmup,
        steps=args.steps, importance_batches=args.importance_batches, seed=args.seed, threads=args.threads,
    )
    methods = args.methods.split(",") if args.methods else None
    rows = run(cfg, methods, args.isolate)
    command = shlex.join(["python", "benchmark/perf.py", *(sys.argv[1:] if argv is None else argv)])
    meta = header(cfg, command)
    csv_path, md_path = write_outputs(rows, meta, args.out_dir, output_stem(cfg))
    print(f"{meta['device']}, torch {meta['torch']}, {cfg.backbone} batch {cfg.batch_size} {cfg.dtype}"
          f"{' compiled' if cfg.compile else ''}\n")
    print(markdown_table(rows))
    print(f"\nwrote {csv_path} and {md_path}")
    return rows


if __name__ == "__main__":
    main()
