"""The outputs of a long-horizon run (:mod:`.long_horizon`): the CSV, the markdown summary and the
two figures.

- ``results.csv``: ``chunk, method, metric, mean, n`` (the mean over the live car-episodes);
- ``summary.md``: the command, the step times, the headline table (the model against the best
  floor at chunks 1, 4, 8, 12, 16, 20) and the full table (rows: metric × method, columns:
  chunks);
- ``curves.png``: one panel per metric, one line per method over the chunks;
- ``filmstrip.png``: one car of the first episode, generated row over true row, the last frame
  of chunks 1, 4, 8, 12, 16, 20.

Matplotlib is imported only by the figure functions, with the Agg backend.

Example:
    >>> from shareverse_env.evaluation.long_horizon import LongHorizonConfig, LongHorizonResult
    >>> from shareverse_env.evaluation.long_horizon import METHODS, METRICS
    >>> live = np.ones((1, 1, 2), bool)
    >>> values = {m: {k: np.full((1, 1, 2), 20.0) for k in METRICS} for m in METHODS}
    >>> result = LongHorizonResult(LongHorizonConfig(chunks=2), [], ["agent_0"], values, live,
    ...                            {"model": [4.0], "world": [0.2]}, {})
    >>> print(chunk_table(result, metrics=("psnr",), methods=("model",)))
    | metric | method | 1 | 2 |
    |---|---|---:|---:|
    | PSNR (dB) ↑ | `model` | 20.00 | 20.00 |
    | n (car-episodes) | | 1 | 1 |
"""

from __future__ import annotations

import csv
import os
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from shareverse_env.core.files import atomic_file
from shareverse_env.evaluation.long_horizon import (
    FILMSTRIP_CHUNKS,
    METHODS,
    METRIC_LABELS,
    METRICS,
    LongHorizonResult,
    best_floor,
    present_chunks,
)

FORMATS: dict[str, str] = {
    "psnr": "{:.2f}",
    "ssim": "{:.3f}",
    "lpips": "{:.3f}",
    "detail": "{:.2f}",
    "colour_drift": "{:.1f}",
}

SHORT_FLOOR = {"repeat": "rep", "blurred_repeat": "blur"}
"""Floor names in the headline table."""

STYLES = {
    "model": {"color": "C3", "lw": 2.2, "marker": "o", "ms": 3},
    "repeat": {"color": "C0", "ls": "--"},
    "blurred_repeat": {"color": "C2", "ls": "--"},
    "previous_truth": {"color": "0.45", "ls": ":"},
}


def _fmt(metric: str, value: float) -> str:
    return "" if not np.isfinite(value) else FORMATS[metric].format(value)


def _metrics(result: LongHorizonResult, metrics: Sequence[str] | None) -> list[str]:
    """The metrics to show: all that were scored (LPIPS only when it ran)."""
    wanted = METRICS if metrics is None else metrics
    return [m for m in wanted if result.has_metric(m)]


def write_csv(result: LongHorizonResult, path: str | os.PathLike) -> Path:
    """``results.csv``: one row per chunk, method and metric (``mean``, ``n``)."""
    path = Path(path)
    with atomic_file(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, ["chunk", "method", "metric", "mean", "n"])
        writer.writeheader()
        for row in result.rows():
            writer.writerow({**row, "mean": f"{row['mean']:.6g}"})
    return path


def chunk_table(
    result: LongHorizonResult,
    metrics: Sequence[str] | None = None,
    methods: Sequence[str] = METHODS,
    chunks: Sequence[int] | None = None,
) -> str:
    """Markdown table: rows metric × method, columns the chunks, a last row of ``n``."""
    cols = list(result.chunks) if chunks is None else list(chunks)
    lines = [
        "| metric | method | " + " | ".join(str(c) for c in cols) + " |",
        "|---|---|" + "---:|" * len(cols),
    ]
    for metric in _metrics(result, metrics):
        for method in methods:
            means = result.mean(method, metric)
            cells = [_fmt(metric, means[c - 1]) for c in cols]
            lines.append(f"| {METRIC_LABELS[metric]} | `{method}` | " + " | ".join(cells) + " |")
    n = result.n()
    lines.append("| n (car-episodes) | | " + " | ".join(str(int(n[c - 1])) for c in cols) + " |")
    return "\n".join(lines)


def headline_table(
    result: LongHorizonResult,
    metrics: Sequence[str] = ("psnr", "lpips", "detail", "colour_drift"),
    chunks: Sequence[int] = FILMSTRIP_CHUNKS,
) -> str:
    """Markdown table of the model against the best floor (:func:`~.long_horizon.best_floor`,
    named per cell) at ``chunks``."""
    cols = present_chunks(result, chunks)
    lines = [
        "| metric | | " + " | ".join(f"chunk {c}" for c in cols) + " |",
        "|---|---|" + "---:|" * len(cols),
    ]
    for metric in _metrics(result, metrics):
        model = result.mean("model", metric)
        floor, names = best_floor(result, metric)
        lines.append(
            f"| {METRIC_LABELS[metric]} | model | "
            + " | ".join(_fmt(metric, model[c - 1]) for c in cols)
            + " |"
        )
        lines.append(
            "| | best floor | "
            + " | ".join(
                f"{_fmt(metric, floor[c - 1])} ({SHORT_FLOOR[names[c - 1]]})"
                if np.isfinite(floor[c - 1])
                else ""
                for c in cols
            )
            + " |"
        )
    n = result.n()
    lines.append("| n (car-episodes) | | " + " | ".join(str(int(n[c - 1])) for c in cols) + " |")
    return "\n".join(lines)


def summary_markdown(result: LongHorizonResult, command: str | None = None) -> str:
    """``summary.md``: the run, the step times, the headline table and the full table."""
    cfg = result.config
    steps = result.median_step_seconds()
    goal = "the env's default" if cfg.goal_distance is None else f"{cfg.goal_distance} m"
    command = command or result.command
    held_out = " (held out: training towns lie below 1,000,000)" if cfg.town_seed >= 10**6 else ""
    lines = [
        "# Long-horizon protocol: the env driven by its expert, against the exact renderer",
        "",
        *(["```bash", command, "```", ""] if command else []),
        f"{len(result.specs)} episodes × {cfg.chunks} chunks × {len(result.agents)} cars, "
        f"reset seeds from {cfg.seed}, towns from {cfg.town_seed}{held_out}, goals {goal}, "
        "`terminate_on_collision=False`. Episodes (scenario, weather, town): "
        + "; ".join(f"{s.scenario} / {s.weather} / {s.town_seed}" for s in result.specs)
        + ".",
        "",
        f"Median wall clock per `env.step`: model env {steps['model']:.2f} s, world env "
        f"{steps['world']:.2f} s (all agents of one chunk); the run took {result.seconds:.0f} s.",
        "",
        "Means over the live car-episodes of each chunk (`n`); every value is the mean over "
        "the chunk's 28 new frames. Floors: `repeat` (the first true frame), `blurred_repeat` "
        "(it, blurred per view); `previous_truth` (the previous chunk's last true frame) is an "
        "oracle reference, not a floor.",
        "",
        "## Headline: the model against the best floor",
        "",
        headline_table(result),
        "",
        "## Every chunk",
        "",
        chunk_table(result),
        "",
    ]
    return "\n".join(lines)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(result: LongHorizonResult, path: str | os.PathLike) -> Path:
    """``curves.png``: one panel per scored metric, one line per method over the chunks."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    metrics = _metrics(result, None)
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.3 * len(metrics), 3.0), dpi=90)
    axes = np.atleast_1d(axes)
    for ax, metric in zip(axes, metrics, strict=True):
        for method in METHODS:
            ax.plot(result.chunks, result.mean(method, metric), label=method, **STYLES[method])
        if metric == "detail":
            ax.axhline(1.0, color="k", lw=0.6)
        ax.set_title(METRIC_LABELS[metric], fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("chunk (2.8 s each)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(METHODS), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    path = Path(path)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def plot_filmstrip(
    result: LongHorizonResult,
    path: str | os.PathLike,
    chunks: Sequence[int] = FILMSTRIP_CHUNKS,
    colours: int = 192,
) -> Path | None:
    """``filmstrip.png``: the filmstrip car's generated row over its true row, the last frame of
    each of ``chunks`` it drove, at native size. The PNG is palette-quantised to ``colours``
    colours to stay small. ``None`` when the result has no filmstrip frames."""
    film = result.filmstrip
    if "chunks" not in film:
        return None
    have = [int(c) for c in film["chunks"]]
    cols = [c for c in present_chunks(result, chunks) if c in have]
    if not cols:
        return None
    plt = _pyplot()
    h, w = film["generated"].shape[1:3]
    scale = 1.0 / 100  # figure inches per frame pixel at dpi 100: native size
    margin = 0.22  # inches: the row labels
    width = len(cols) * w * scale * 1.02 + margin
    episode, agent = result.filmstrip_car
    spec = result.specs[episode] if result.specs else None
    where = f": {spec.scenario}, {spec.weather}, town {spec.town_seed}" if spec else ""
    title = f"episode {episode}, {agent}{where}; last frame of each chunk"
    lines = textwrap.wrap(title, max(20, int(width * 17)))  # about 17 characters an inch at 7 pt
    top = 0.2 + 0.12 * len(lines)  # inches: the chunk titles and the figure's
    height = 2 * h * scale * 1.03 + top
    fig, axes = plt.subplots(2, len(cols), figsize=(width, height), dpi=100, squeeze=False)
    for j, c in enumerate(cols):
        i = have.index(c)
        for row, key in enumerate(("generated", "truth")):
            ax = axes[row, j]
            ax.imshow(film[key][i], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"chunk {c} ({2.8 * c:.1f} s)", fontsize=7, pad=2)
            if j == 0:
                ax.set_ylabel("model" if key == "generated" else "truth", fontsize=7, labelpad=2)
    fig.suptitle("\n".join(lines), fontsize=7, y=0.995, va="top")
    fig.subplots_adjust(
        left=margin / width, right=0.998, bottom=0.005, top=1 - (top - 0.04) / height,
        wspace=0.02, hspace=0.03,
    )  # fmt: skip
    path = Path(path)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    _quantise(path, colours)
    return path


def _quantise(path: Path, colours: int) -> None:
    """Rewrite a PNG with an adaptive palette (a third of the size; Pillow comes with
    matplotlib)."""
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colours)
    with atomic_file(path) as tmp:
        small.save(tmp, format="PNG", optimize=True)


def write_outputs(
    result: LongHorizonResult, out: str | os.PathLike, command: str | None = None
) -> list[Path]:
    """Every output of a run into ``out``: ``results.csv``, ``summary.md``, ``curves.png``,
    ``filmstrip.png`` and the raw values (``values.npz``, ``run.json``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if command is not None:
        result.command = command
    written = [*result.save(out), write_csv(result, out / "results.csv")]
    summary = out / "summary.md"
    with atomic_file(summary) as tmp:
        tmp.write_text(summary_markdown(result, command))
    written += [summary, plot_curves(result, out / "curves.png")]
    film = plot_filmstrip(result, out / "filmstrip.png")
    if film is not None:
        written.append(film)
    return written
