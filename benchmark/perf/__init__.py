"""Speed and memory of one training step for every registered PEFT method, side by side.

    python -m benchmark.perf --backbone tiny_vit --device cpu
    python -m benchmark.perf --backbone timm:deit_tiny_patch16_224 --image-size 224 --device cpu \
        --batch-size 16 --methods shpeft --ratio 1e-3 1e-2 --repeats 3
    python -m benchmark.perf --backbone clip_vit_b16 --device cuda --dtype bf16 --batch-size 128 [--compile]

For each method (and each ``--ratio`` for the sparse methods): a fresh backbone (any name of
``benchmark.backbones.create_backbone``; random weights: speed does not depend on them),
``baselines.prepare`` with one random calibration batch, AdamW (fused on CUDA), then warm-up
steps and measured steps of a full training step (forward, loss, backward, optimizer step,
zero_grad) on random inputs. Reported: median step time (CUDA events on GPU, perf_counter on
CPU), ms per image, images/s, peak memory of two further steps counted like
``torch.cuda.max_memory_allocated`` (CUDA: that, above the level before the model was built;
CPU: the live tensors' bytes plus the growth of the anonymous resident memory, sampled every
millisecond), trainable parameters, optimizer-state bytes, and each method's time and memory
relative to BitFit, LoRA and full fine-tuning of the same run (always measured, at their own
sizes). On CPU every method runs in its own process (forked from a server that has imported
torch), so memory cannot leak between methods; on CUDA peak stats are reset. ``--repeats N``
measures every method N times, round-robin, and pools the steps (median) and the peaks
(median); ``--clock cpu`` times CPU steps with the process's CPU time (for a loaded machine).
The SH-PEFT importance pass (``shpeft.importance`` over n batches) is timed per image.
Results: a printed table, and CSV + Markdown under ``results/perf/``.

Modules: ``measure`` (configuration, one measurement per method, repeats, ratios), ``memory``
(the peak-memory probe), ``report`` (table, CSV, provenance header), ``cli`` (this command), and
``routes`` (``python -m benchmark.perf.routes``: time every delta-gradient route of every sparse layer).
"""
from .cli import main, parse_args
from .measure import (
    DEFAULT_RATIOS, IMPORTANCE_ROW, NUM_CLASSES, REFERENCES, PerfConfig, build_backbone, jobs, measure_importance,
    measure_method, method_ratios, pool, random_batch, run,
)
from .memory import PeakMemory
from .report import COLUMNS, markdown_table, write_outputs

__all__ = [
    "COLUMNS", "DEFAULT_RATIOS", "IMPORTANCE_ROW", "NUM_CLASSES", "REFERENCES", "PeakMemory", "PerfConfig",
    "build_backbone", "jobs", "main", "markdown_table", "measure_importance", "measure_method", "method_ratios",
    "parse_args", "pool", "random_batch", "run", "write_outputs",
]
