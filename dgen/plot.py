"""Training plots (matplotlib, optional extra `dgen[plot]`, imported lazily)."""

from __future__ import annotations

import numpy as np

from .errors import BackendUnavailable


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover
        raise BackendUnavailable("plots need matplotlib: pip install 'dgen[plot]'") from e
    return plt


def plot_history(history, path, title="training", targets=None, instance=None, marks=None) -> None:
    """Loss (log scale) and each parameter over the steps of a TrainingContext.history.

    targets: {parameter name: target value} drawn as dashed lines. instance: which instance
    to draw when the history holds one value per instance (default: the best final loss).
    marks: {label: step} drawn as vertical lines (e.g. where a training phase starts).
    """
    plt = _pyplot()
    if not history:
        raise ValueError("plot_history: the history is empty")
    names = [k for k in history[0] if k not in ("step", "loss")]
    steps = [h["step"] for h in history]

    def series(key):
        vals = [h[key] for h in history]
        if np.ndim(vals[0]) == 0:
            return np.asarray(vals, np.float64)
        k = instance if instance is not None else int(np.argmin(history[-1]["loss"]))
        return np.asarray([v[k] for v in vals], np.float64)

    fig, axes = plt.subplots(1 + len(names), 1, figsize=(7, 2.2 * (1 + len(names))), sharex=True)
    axes = np.atleast_1d(axes)
    axes[0].semilogy(steps, np.maximum(series("loss"), 1e-12))
    axes[0].set_ylabel("loss")
    axes[0].set_title(title)
    for ax, name in zip(axes[1:], names):
        ax.plot(steps, series(name))
        if targets and name in targets:
            ax.axhline(targets[name], ls="--", color="gray")
        ax.set_ylabel(name)
    for label, step in (marks or {}).items():
        for ax in axes:
            ax.axvline(step, ls=":", color="tab:red")
        axes[0].annotate(label, (step, 1.0), xycoords=("data", "axes fraction"), va="top", fontsize=8)
    axes[-1].set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
