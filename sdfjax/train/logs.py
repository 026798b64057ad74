"""What a training run logs for people: metrics.jsonl, TensorBoard events and loss.png.

The workdir may be local or remote (gs://...; sdfjax.storage). TensorBoard events are written
for local workdirs only (tensorboardX has no gs:// writer here); metrics.jsonl and
loss.png go everywhere.
"""

from __future__ import annotations

import json
import os
import sys

from tensorboardX import SummaryWriter

from sdfjax import storage


class MetricsLog:
    """One record per period into `<workdir>/metrics.jsonl` and TensorBoard (process 0 only)."""

    def __init__(self, workdir: str, enabled: bool):
        self.enabled = enabled
        self.path = storage.join(workdir, "metrics.jsonl")
        self.writer = SummaryWriter(workdir) if enabled and not storage.is_remote(workdir) else None
        if enabled and storage.is_remote(workdir):
            print(f"{workdir}: no TensorBoard events on a remote workdir; metrics.jsonl has the same records",
                  file=sys.stderr)
        if enabled:
            _drop_partial_last_line(self.path)

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        storage.append_text(self.path, json.dumps(record) + "\n")
        if self.writer is None:
            return
        for k, v in record.items():
            if k not in ("epoch", "step") and isinstance(v, (int, float)):
                self.writer.add_scalar(f"train/{k}", v, record["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _drop_partial_last_line(path: str) -> None:
    """Cuts a last line that a killed run left without its newline, so appended records stay one per line."""
    if not storage.exists(path):
        return
    content = storage.read_bytes(path)
    if not content or content.endswith(b"\n"):
        return
    storage.atomic_write_bytes(path, content[:content.rfind(b"\n") + 1])


def _parse(line: str) -> dict | None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) and "step" in record else None


def read_metrics(workdir: str) -> list[dict]:
    """The records of `<workdir>/metrics.jsonl` by step; a resumed run's rewrite of a step wins.

    A line that does not parse (a run killed mid-write) is skipped.
    """
    path = storage.join(workdir, "metrics.jsonl")
    if not storage.exists(path):
        return []
    records = [r for line in storage.read_text(path).splitlines() if line.strip() and (r := _parse(line)) is not None]
    latest = {}  # a resumed run rewrites steps after its checkpoint: keep the last of each
    for r in records:
        latest[r["step"]] = r
    return [latest[e] for e in sorted(latest)]


def plot_loss(workdir: str, series: dict[str, str] | None = None, x: str = "epoch") -> str:
    """workdir/loss.png: the metrics.jsonl columns of `series` ({key: label}) against `x`, log scale."""
    import matplotlib  # deferred: a plotting backend is only needed at the end of a run

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(workdir)
    path = storage.join(workdir, "loss.png")
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (series or {"loss": "loss", "sdf_loss": "clamped L1"}).items():
        ax.plot([r[x] for r in records], [r[key] for r in records], label=label)
    ax.set_yscale("log")
    ax.set_xlabel(x)
    ax.set_title(os.path.basename(os.path.normpath(workdir)))
    ax.legend()
    fig.tight_layout()
    storage.save_figure(path, fig)
    plt.close(fig)
    return path
