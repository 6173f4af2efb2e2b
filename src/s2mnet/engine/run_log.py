"""Training logs of a run: a CSV table, TensorBoard scalars, a training-curve PNG and, optionally, an
experiment tracker (:mod:`s2mnet.engine.tracking`).

One row per epoch. The CSV (``train_log.csv``) and the PNG (``curves.png``) are rewritten atomically after
every epoch, so an interrupted run still has readable logs up to its last finished epoch.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from s2mnet.engine.rundir import CURVES_PNG, LOG_CSV, TENSORBOARD_DIR
from s2mnet.engine.tracking import Tracker
from s2mnet.io_utils import atomic_write_text, atomic_write_with

#: Columns always present first in the CSV, in this order; any other logged key follows, sorted.
BASE_COLUMNS = ("epoch", "step", "lr", "train_loss", "val_dice", "best_dice", "epoch_s", "elapsed_s")


class RunLogger:
    """Collects one dict of scalars per epoch and writes CSV, TensorBoard and curves.

    Args:
        run_dir: the run folder.
        tensorboard: also write TensorBoard event files under ``run_dir/tensorboard``.
        tracker: also send every row to this tracker (:func:`s2mnet.engine.tracking.make_tracker`);
            :meth:`close` finishes it.
    """

    def __init__(self, run_dir: str | Path, tensorboard: bool = True, tracker: Tracker | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.rows: list[dict[str, Any]] = []
        self.tracker = tracker
        self._writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.run_dir / TENSORBOARD_DIR))

    def log_epoch(self, row: dict[str, Any]) -> None:
        """Record one epoch (``epoch`` and ``step`` keys required) and refresh the CSV and TensorBoard."""
        self.rows.append(dict(row))
        if self._writer is not None:
            step = int(row["step"])
            for key, value in row.items():
                if key in ("epoch", "step") or not _is_number(value):
                    continue
                self._writer.add_scalar(_tensorboard_tag(key), float(value), global_step=step)
            self._writer.flush()
        if self.tracker is not None:
            self.tracker.log_metrics(row, step=int(row["step"]))
        self.write_csv()

    def write_csv(self) -> None:
        """Write ``train_log.csv`` (empty cells where an epoch did not log a value, e.g. no validation)."""
        extra = sorted({key for row in self.rows for key in row} - set(BASE_COLUMNS))
        columns = [*BASE_COLUMNS, *extra]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({key: _format(value) for key, value in row.items()})
        atomic_write_text(self.run_dir / LOG_CSV, buffer.getvalue())

    def write_curves(self) -> Path:
        """Plot loss, validation Dice, learning rate and (for MASL) the loss weights to ``curves.png``."""
        return plot_curves(self.rows, self.run_dir / CURVES_PNG)

    def close(self) -> None:
        """Flush and close TensorBoard; finish the tracker (artifacts: the run folder as it is now)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self.tracker is not None:
            self.tracker.finish("FINISHED")
            self.tracker = None


def plot_curves(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Draw the training curves of ``rows`` (one dict per epoch) into a PNG, atomically.

    Panels: training loss, validation Dice (with the best epoch marked), learning rate, and the MASL
    effective weights ``w_*`` when they were logged.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in rows]
    weight_keys = sorted({key for row in rows for key in row if key.startswith("w_")})
    panels = 4 if weight_keys else 3
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.4), constrained_layout=True)

    axes[0].plot(epochs, [row.get("train_loss", math.nan) for row in rows], marker=".")
    axes[0].set(title="training loss", xlabel="epoch")

    val = [(row["epoch"], row["val_dice"]) for row in rows if _is_number(row.get("val_dice"))]
    if val:
        axes[1].plot(*zip(*val, strict=True), marker="o", color="tab:green")
        best_epoch, best_dice = max(val, key=lambda item: item[1])
        axes[1].axvline(best_epoch, color="grey", linestyle=":", label=f"best {best_dice:.3f} @ {best_epoch}")
        axes[1].legend(loc="lower right")
    axes[1].set(title="validation Dice", xlabel="epoch", ylim=(0, 1))

    axes[2].plot(epochs, [row.get("lr", math.nan) for row in rows], color="tab:orange")
    axes[2].set(title="learning rate (end of epoch)", xlabel="epoch", yscale="log")

    from matplotlib.ticker import MaxNLocator

    for axis in axes:
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    if weight_keys:
        for key in weight_keys:
            axes[3].plot(epochs, [row.get(key, math.nan) for row in rows], label=key[2:])
        axes[3].set(title="MASL weights w", xlabel="epoch")
        axes[3].legend(fontsize="small")

    path = Path(path)
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
    return path


def _tensorboard_tag(key: str) -> str:
    """Group scalars in TensorBoard: ``masl/w_core``, ``train/loss``, ``val/dice``, ``opt/lr``."""
    if key in ("train_loss",):
        return "train/loss"
    if key in ("val_dice", "best_dice"):
        return f"val/{key.removeprefix('val_')}"
    if key == "lr":
        return "opt/lr"
    if key.startswith(("L_", "alpha_", "w_")):
        return f"masl/{key}"
    return f"misc/{key}"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _format(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return value
