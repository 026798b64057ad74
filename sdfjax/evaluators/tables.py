"""What a fit writes for people: metrics.csv with mean rows, an aligned table, loss curves."""

from __future__ import annotations

import csv
import warnings

import numpy as np

from sdfjax import storage
from sdfjax.geometry import metrics

CSV_COLUMNS = ("obj_id",) + metrics.METRIC_NAMES + ("fit_loss",)


def write_metrics_csv(path: str, rows: list[dict], group_by: str | None = None, overall: bool = False):
    """Writes rows plus `mean_metric` rows (NaN-aware means); returns the mean row.

    With `group_by` (a column such as "method"), there is one mean row per value of that
    column and the return value is {value: mean row}; with `overall` too, a last mean row of
    every row, under the value "all". Columns beyond the metrics that the rows carry (e.g.
    "method", "retrieved") are written after obj_id.
    """
    groups = {None: rows} if group_by is None else {}
    if group_by is not None:
        for r in rows:
            groups.setdefault(r[group_by], []).append(r)
        if overall:
            groups["all"] = rows
    means = {}
    for key, members in groups.items():
        mean = {"obj_id": "mean_metric", **({group_by: key} if group_by else {})}
        for name in CSV_COLUMNS[1:]:
            values = np.asarray([r.get(name, np.nan) for r in members], np.float64)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN column: NaN mean
                mean[name] = float(np.nanmean(values)) if len(values) else float("nan")
        means[key] = mean
    extra = [k for k in dict.fromkeys(k for r in rows for k in r) if k not in CSV_COLUMNS]
    columns = CSV_COLUMNS[:1] + tuple(extra) + CSV_COLUMNS[1:]
    with storage.atomic_write(path, "w") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows + list(means.values()):
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return means[None] if group_by is None else means


def format_table(rows: list[dict], first: str = "obj_id") -> str:
    """The metrics as an aligned text table (what the launchers print); `first` heads the rows' obj_id column."""
    header = [first, "Chamfer x1000", "EMD", "F@0.01", "F@0.02", "NC"]
    keys = ["obj_id", "chamfer", "emd", "fscore@0.01", "fscore@0.02", "normal_consistency"]
    cells = [header] + [[str(r["obj_id"])] + [f"{r[k]:.4f}" for k in keys[1:]] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)) for line in cells)


def plot_loss_curves(path: str, curves: np.ndarray, obj_ids: list[str]) -> None:
    """A log-scale plot of each shape's fitting loss (curves (T, S)) against the step."""
    import matplotlib  # deferred: a plotting backend is only needed when a fit is written

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for i, obj_id in enumerate(obj_ids):
        ax.plot(curves[:, i], lw=0.8, label=obj_id if len(obj_ids) <= 8 else None)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("fitting loss")
    if len(obj_ids) <= 8:
        ax.legend(fontsize=6)
    fig.tight_layout()
    storage.save_figure(path, fig)
    plt.close(fig)
