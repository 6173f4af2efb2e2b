"""``s2m bench efficiency``: parameters, FLOPs, latency, training-step time, throughput and memory.

Modules: :mod:`~s2mnet.bench.efficiency.peers` (the models, with MONAI's UNet and SwinUNETR),
:mod:`~s2mnet.bench.efficiency.measure` (FLOPs with FFTs, time, memory),
:mod:`~s2mnet.bench.efficiency.training` (the training step: a real ``Trainer`` of ``s2m train``),
:mod:`~s2mnet.bench.efficiency.cells` (one cell, in a subprocess with a time cap),
:mod:`~s2mnet.bench.efficiency.report` (ratios, exponents, Markdown, JSON, plot) and
:mod:`~s2mnet.bench.efficiency.run` (the run and ``python -m s2mnet.bench.efficiency``).

Every (model, size) cell is measured in a subprocess (a fresh one per cell on CPU, one reused across cells
on GPU) with a wall-time cap, so an out-of-memory error or a cell that is too slow is reported as "skipped"
with its reason instead of ending the run, and the CPU peak-memory mark starts clean. Larger sizes of a
model that did not fit are skipped too.

Conventions (also written into the report):

* FLOPs: :class:`torch.utils.flop_counter.FlopCounterMode` on one image (batch 1, eval mode) counts
  convolutions and matrix products at 2 FLOPs per multiply-add (element-wise ops, norms and activations
  are not counted). "GMAC" is that count / 2. The counter skips FFTs; they are added by hand at
  5·N·log2(N) real FLOPs per complex length-N FFT, half for a real-input one (:func:`fft_flops`); the
  FFT FLOPs have no MAC equivalent and are reported separately ("FFT GFLOPs") and in "GFLOPs total".
  Counting runs on the ``meta`` device where the model allows it (shapes only, no compute), else on the
  measuring device; the CPU flash-attention kernel is unknown to the counter and is counted by hand
  (QKᵀ and AV, 4·N²·C FLOPs per image for N tokens of C channels).
* Latency: forward pass in eval mode under ``torch.inference_mode`` (and bf16 autocast with ``--amp bf16``),
  median of the timed repeats after warm-up; ``torch.cuda.synchronize`` around every timed call on GPU.
  Throughput = batch / median time.
* Training step: exactly the step of ``s2m train`` — one ``Trainer.train_epoch`` of a real
  :class:`s2mnet.engine.trainer.Trainer` over a one-batch in-memory loader (host→device copy, model and
  loss in :class:`~s2mnet.engine.trainer.TrainStep` under the Trainer's autocast, backward, gradient
  clipping, AdamW over the model's parameters and the loss's learnable weights, scheduler step; details
  in :mod:`s2mnet.bench.efficiency.training`); ``--channels-last`` and ``--compile`` as in ``s2m train``.
  MASL for the S2M-Net family (``s2mnet*``), MONAI Dice-CE for every other model; the targets are disks
  and lines. MASL's share = median time of MASL forward + backward alone on the same logits shape /
  median time of the whole step.
* Peak memory, of the first forward pass and of the first training step of the fresh process (nothing
  cached yet; the step includes allocating AdamW's state): GPU: ``torch.cuda.max_memory_allocated`` after
  ``reset_peak_memory_stats`` (absolute: weights, optimizer state, activations, workspaces).
  CPU: growth of the resident set during the phase: the kernel's peak-RSS mark is reset
  (``/proc/self/clear_refs``) and the number is ``VmHWM − VmRSS`` (activations and workspaces on top
  of what was already resident; ``ru_maxrss`` where /proc is absent).
* Ratios at the same size against ``s2mnet`` and against MONAI's UNet measured in the same run.
* Scaling exponent: least-squares slope of log(time or memory) against log(pixel count) over the sizes
  that were measured (:func:`s2mnet.bench.stats.fit_exponent`).
* Peers: MONAI ``UNet(spatial_dims=2, channels=(32, 64, 128, 256, 512), strides=(2, 2, 2, 2),
  num_res_units=2)`` and ``SwinUNETR(spatial_dims=2, feature_size=24)`` (patch 2 and four ×2 merges:
  the input side must be divisible by 32; other sizes are skipped). Our ``unet`` is the classic 64…1024
  U-Net.
"""

from s2mnet.bench.efficiency.cells import RESULT_MARK, CellWorker, measure_cell
from s2mnet.bench.efficiency.measure import (
    PeakMemory,
    complex_fft2_flops,
    count_flops,
    fft_flops,
    median_seconds,
    model_flops,
    peak_rss_kib,
    reset_peak_rss_kib,
    synchronise,
    synthetic_masks,
)
from s2mnet.bench.efficiency.peers import (
    MONAI_UNET,
    SWIN_DIVISOR,
    SWIN_FEATURE_SIZE,
    build_model,
    known_models,
    loss_name_for,
    size_problem,
)
from s2mnet.bench.efficiency.report import (
    EXPONENT_KEYS,
    PEER_REFERENCE,
    RATIO_KEYS,
    REFERENCE,
    add_ratios_and_exponents,
    efficiency_markdown,
    format_cell,
    peer_ratio_lines,
    plot_efficiency,
    rebuild_report,
    write_tables,
)
from s2mnet.bench.efficiency.run import machine_description, main, run_efficiency
from s2mnet.bench.efficiency.training import make_trainer, training_plan

__all__ = [
    "EXPONENT_KEYS",
    "MONAI_UNET",
    "PEER_REFERENCE",
    "RATIO_KEYS",
    "REFERENCE",
    "RESULT_MARK",
    "SWIN_DIVISOR",
    "SWIN_FEATURE_SIZE",
    "CellWorker",
    "PeakMemory",
    "add_ratios_and_exponents",
    "build_model",
    "complex_fft2_flops",
    "count_flops",
    "efficiency_markdown",
    "fft_flops",
    "format_cell",
    "known_models",
    "loss_name_for",
    "machine_description",
    "main",
    "make_trainer",
    "measure_cell",
    "median_seconds",
    "model_flops",
    "peak_rss_kib",
    "peer_ratio_lines",
    "plot_efficiency",
    "rebuild_report",
    "reset_peak_rss_kib",
    "run_efficiency",
    "size_problem",
    "synchronise",
    "synthetic_masks",
    "training_plan",
    "write_tables",
]
