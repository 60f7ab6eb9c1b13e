"""Loss curves of one or more training runs as a PNG (matplotlib, no display needed)."""

from __future__ import annotations


def smooth(values: list[float], weight: float) -> list[float]:
    """Exponential moving average with bias correction (the first points are not pulled to 0)."""
    out, avg = [], 0.0
    for i, v in enumerate(values, 1):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight ** i))
    return out


def plot_losses(runs: dict, path: str, title: str) -> None:
    """Draw each run's training loss (thin, smoothed when long) and validation loss (points)
    against the step; `runs` maps a label to a loss log (loop.train's log, loss.json)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..tensor import atomic_write

    if not runs:
        raise ValueError("plot_losses needs at least one run")
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    for i, (label, log) in enumerate(runs.items()):
        color = f"C{i % 10}"
        train = [(r["step"], r["loss"]) for r in log.get("train", []) if r["loss"] == r["loss"]]
        if train:
            steps, losses = zip(*train)
            weight = 0.9 if len(losses) > 50 else 0.0
            ax.plot(steps, smooth(list(losses), weight), color=color, alpha=0.45, linewidth=1,
                    label=f"{label} train" if len(runs) == 1 else None)
        val = log.get("val", [])
        if val:
            last = val[-1]["loss"]
            ax.plot([r["step"] for r in val], [r["loss"] for r in val], color=color, marker="o",
                    markersize=3, linewidth=1.5, label=f"{label} val (last {last:.4f})")
        if "diverged_at" in log:
            ax.axvline(log["diverged_at"], color=color, linestyle=":", linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("next-token loss (nats)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
