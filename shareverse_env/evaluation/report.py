"""Reports of a quality run: the markdown summary, the conclusions and the figures.

The conclusions are computed from the numbers: each compares two variants on the rows they
share (same sequence, agent and chunk), reports the mean difference, its standard error and how
many rows the first variant wins, and calls a difference clear only when it exceeds twice its
standard error.

Matplotlib (the ``test``/``train`` extra) is imported only by the figure functions, with the
Agg backend.

Example:
    >>> from shareverse_env.evaluation.quality import ChunkScore, QualityResult
    >>> rows = [ChunkScore("000000", "head_on", "fog", a, k, v, p + a, 0.5, p, 0.5, 0.3, 28)
    ...         for v, p in (("trained", 20.0), ("repeat", 18.0)) for a in (0, 1) for k in (0, 1)]
    >>> print(summary_table(QualityResult(rows)))  # doctest: +NORMALIZE_WHITESPACE
    | variant | PSNR all | SSIM all | PSNR overlap | SSIM overlap | LPIPS | detail | response | follow dB | PSNR chunk 0 | PSNR chunk 1 |
    |---|---|---|---|---|---|---|---|---|---|---|
    | trained | 20.50 | 0.5000 | 20.00 | 0.5000 | n/a | n/a | n/a | n/a | 20.50 | 20.50 |
    | repeat | 18.50 | 0.5000 | 18.00 | 0.5000 | n/a | n/a | n/a | n/a | 18.50 | 18.50 |
    | **best floor** | 18.50 (repeat) | 0.5000 (repeat) | 18.00 (repeat) | 0.5000 (repeat) | n/a | | | | 18.50 (repeat) | 18.50 (repeat) |
    >>> compare(QualityResult(rows), "trained", "repeat", "psnr")["wins"]
    4
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from shareverse_env.evaluation.action_probes import PROBES
from shareverse_env.evaluation.consistency import AGREE_TOLERANCE
from shareverse_env.evaluation.quality import (
    LOWER_IS_BETTER,
    QUALITY_METRICS,
    QualityResult,
    best_floor,
)
from shareverse_env.evaluation.variants import FLOORS, VARIANTS

COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("psnr", "PSNR all", "{:.2f}"),
    ("ssim", "SSIM all", "{:.4f}"),
    ("psnr_overlap", "PSNR overlap", "{:.2f}"),
    ("ssim_overlap", "SSIM overlap", "{:.4f}"),
    ("lpips", "LPIPS", "{:.4f}"),
    ("detail", "detail", "{:.2f}"),
    ("response", "response", "{:.2f}"),
    ("follow", "follow dB", "{:+.2f}"),
)
"""The summary table's columns: (summary key, heading, format)."""


def _fmt(value: float, pattern: str) -> str:
    return "n/a" if value is None or math.isnan(value) else pattern.format(value)


def summary_table(result: QualityResult) -> str:
    """Markdown table: one row per variant; means over all rows and PSNR per chunk index.

    A last row names the best floor (:data:`~.variants.FLOORS`) of every quality metric and
    chunk with its score: the number a model has to beat there (the lowest for LPIPS, where
    lower is better).
    """
    summary = result.summary()
    chunks = range(result.num_chunks)
    head = ["variant", *(c[1] for c in COLUMNS), *(f"PSNR chunk {k}" for k in chunks)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for variant, stats in summary.items():
        cells = [variant, *(_fmt(stats[key], pattern) for key, _, pattern in COLUMNS)]
        cells += [_fmt(stats[f"psnr_chunk{k}"], "{:.2f}") for k in chunks]
        lines.append("| " + " | ".join(cells) + " |")
    floors = [f for f in FLOORS if f in summary]
    if floors:
        keys = [(key, pattern) for key, _, pattern in COLUMNS]
        keys += [(f"psnr_chunk{k}", "{:.2f}") for k in chunks]
        cells = ["**best floor**"]
        for key, pattern in keys:
            lower = key in LOWER_IS_BETTER
            if key not in QUALITY_METRICS and not lower and not key.startswith("psnr_chunk"):
                cells.append("")
                continue
            scored = [(summary[f][key], f) for f in floors if not math.isnan(summary[f][key])]
            if not scored:
                cells.append("n/a")
                continue
            value, name = min(scored) if lower else max(scored)
            cells.append(f"{_fmt(value, pattern)} ({name})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def action_table(result: QualityResult) -> str:
    """Markdown table of the action probes per variant: response and follow for each probe.

    Empty when no probe ran.
    """
    summary = result.summary()
    probes = [
        p for p in PROBES if any(not math.isnan(s[f"response_{p}"]) for s in summary.values())
    ]
    if not probes:
        return ""
    head = ["variant"]
    for p in probes:
        head += [f"response {p}", f"follow {p} dB", f"true change {p}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for variant, stats in summary.items():
        cells = [variant]
        for p in probes:
            true_change = _nanmean_rows(result, variant, f"true_change_{p}")
            cells += [
                _fmt(stats[f"response_{p}"], "{:.2f}"),
                _fmt(stats[f"follow_{p}"], "{:+.2f}"),
                _fmt(true_change, "{:.1f}"),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def consistency_table(result: QualityResult) -> str:
    """Markdown table of cross-agent consistency per variant (:mod:`.consistency`): the mean
    colour difference over co-visible pixels, the share that agree, the truth's own difference
    and the excess over it. Empty when no row has co-visible pixels."""
    columns = (
        ("difference", "xagent_diff", "{:.1f}"),
        ("agree", "xagent_agree", "{:.2f}"),
        ("truth's difference", "true_xagent_diff", "{:.1f}"),
        ("excess", "xagent_excess", "{:+.1f}"),
    )
    return _summary_table(result, columns)


def _summary_table(result: QualityResult, columns: tuple[tuple[str, str, str], ...]) -> str:
    """Markdown table, one row per variant, of summary ``columns`` (heading, key, format);
    empty when the first column is ``nan`` for every variant (not measured)."""
    summary = result.summary()
    if all(math.isnan(s.get(columns[0][1], math.nan)) for s in summary.values()):
        return ""
    head = ["variant", *(c[0] for c in columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for variant, stats in summary.items():
        cells = [variant, *(_fmt(stats[key], fmt) for _, key, fmt in columns)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def regions_table(result: QualityResult) -> str:
    """Markdown table of the scores where the chunk must be generated (:mod:`.regions`): PSNR
    over the holes of the first frames' cache (with the other cars), over the other cars'
    boxes, the seam ratio along the holes' edge and the holes' share of the pixels. Empty when
    no row has them (a results file without these columns)."""
    columns = (
        ("PSNR holes", "psnr_holes", "{:.2f}"),
        ("PSNR cars", "psnr_cars", "{:.2f}"),
        ("seam", "seam", "{:.2f}"),
        ("hole share", "hole_fraction", "{:.2f}"),
    )
    return _summary_table(result, columns)


def _measured(result: QualityResult, metric: str) -> bool:
    """Whether any row scored ``metric`` (not ``nan``)."""
    return any(not math.isnan(getattr(r, metric)) for r in result.rows)


def _nanmean_rows(result: QualityResult, variant: str, key: str) -> float:
    v = result.values(variant, key)
    v = v[~np.isnan(v)]
    return float(v.mean()) if len(v) else math.nan


def sign_test(wins: int, n: int) -> float:
    """Two-sided exact sign-test p-value of ``wins`` successes in ``n`` paired comparisons."""
    if n == 0:
        return math.nan
    k = max(wins, n - wins)
    tail = sum(math.comb(n, i) for i in range(k, n + 1)) / 2**n
    return min(1.0, 2 * tail)


def compare(result: QualityResult, first: str, second: str, metric: str) -> dict[str, Any]:
    """Paired comparison of two variants on ``metric`` over the rows both have.

    Returns ``mean_first``, ``mean_second``, ``diff`` (first − second), ``se`` (standard error
    of the paired differences), ``wins`` (rows where first is better: higher, or lower for
    :data:`~.quality.LOWER_IS_BETTER` metrics such as LPIPS), ``n``, ``sign_p`` (the sign
    test's p-value) and ``verdict``: ``"better"``/``"worse"`` when ``|diff| > 2·se``; else
    ``"better in most chunks"``/``"worse in most chunks"`` when the sign test gives
    ``p < 0.05`` (a few large losses can hide a consistent win); else ``"no clear difference"``.
    """
    table: dict[tuple[str, int, int], dict[str, float]] = {}
    for r in result.rows:
        if r.variant in (first, second):
            table.setdefault((r.sequence, r.agent, r.chunk), {})[r.variant] = getattr(r, metric)
    pairs = np.array(
        [
            (v[first], v[second])
            for v in table.values()
            if first in v and second in v and not (math.isnan(v[first]) or math.isnan(v[second]))
        ],
        dtype=np.float64,
    ).reshape(-1, 2)
    n = len(pairs)
    if n == 0:
        nan = math.nan
        keys = ("mean_first", "mean_second", "diff", "se", "sign_p")
        return {**dict.fromkeys(keys, nan), "wins": 0, "n": 0, "verdict": "not measured"}
    d = pairs[:, 0] - pairs[:, 1]
    diff = float(d.mean())
    se = float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else math.inf
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0  # +1 where higher is better
    wins = int((sign * d > 0).sum())
    sign_p = sign_test(wins, int((d != 0).sum()))
    verdict = "no clear difference"
    if abs(diff) > 2 * se:
        verdict = "better" if sign * diff > 0 else "worse"
    elif sign_p < 0.05:
        verdict = "better in most chunks" if 2 * wins > n else "worse in most chunks"
    return {
        "mean_first": float(pairs[:, 0].mean()),
        "mean_second": float(pairs[:, 1].mean()),
        "diff": diff,
        "se": se,
        "wins": wins,
        "n": n,
        "sign_p": sign_p,
        "verdict": verdict,
    }


def _sentence(result: QualityResult, first: str, second: str, metrics: tuple[str, ...]) -> str:
    parts = []
    for metric in metrics:
        c = compare(result, first, second, metric)
        if c["n"] == 0:
            parts.append(f"{metric}: not measured")
            continue
        digits = 2 if metric.startswith("psnr") else 4
        unit = " dB" if metric.startswith("psnr") else ""
        parts.append(
            f"{metric} {c['mean_first']:.{digits}f} vs {c['mean_second']:.{digits}f}{unit} "
            f"(diff {c['diff']:+.{digits}f} ± {c['se']:.{digits}f}, {first} ahead in "
            f"{c['wins']}/{c['n']} chunks, sign test p = {c['sign_p']:.2g}: **{c['verdict']}**)"
        )
    return "; ".join(parts)


def _overall(result: QualityResult, first: str, second: str, metrics: tuple[str, ...]) -> str:
    verdicts = [compare(result, first, second, m)["verdict"] for m in metrics]
    better = [v.startswith("better") for v in verdicts]
    worse = [v.startswith("worse") for v in verdicts]
    if all(v == "better" for v in verdicts):
        return "yes"
    if all(better):
        return "yes in most chunks, though not on every average (see the sign tests)"
    if any(better) and not any(worse):
        return "partly (better on some metrics, no clear difference on the others)"
    if any(worse) and not any(better):
        return "no, it is worse"
    if any(better) and any(worse):
        return "mixed (better on some metrics, worse on others)"
    return "no clear difference"


def beats_best_floor(result: QualityResult, variant: str, metrics: tuple[str, ...]) -> str:
    """One markdown sentence: ``variant`` against the best floor of each metric, paired."""
    parts, verdicts = [], []
    for metric in metrics:
        floor = best_floor(result, metric)
        if floor is None:
            parts.append(f"{metric}: no floor ran")
            continue
        c = compare(result, variant, floor, metric)
        verdicts.append(c["verdict"])
        parts.append(f"vs {floor}, " + _sentence(result, variant, floor, (metric,)))
    if not verdicts:
        return "not measured (no floor ran)."
    if all(v == "better" for v in verdicts):
        head = "yes"
    elif any(v.startswith("worse") for v in verdicts) and not any(
        v.startswith("better") for v in verdicts
    ):
        head = "no, it is worse"
    elif any(v.startswith("better") for v in verdicts):
        head = "only on some metrics or in most chunks"
    else:
        head = "no clear difference"
    return f"{head}. " + "; ".join(parts) + "."


RESPONSE_FOLLOWS = 0.5
"""Response (chunk change over true change) from which a variant counts as following an action;
a clear but smaller follow gain is reported as *barely*."""


def follows_action(result: QualityResult, variant: str) -> str:
    """One markdown sentence: the action probes of ``variant`` (response and follow ± s.e.).

    The verdict is *yes* when every probe's follow gain exceeds two standard errors and its
    response reaches :data:`RESPONSE_FOLLOWS`; *barely* when some gain is clear or some response
    reaches a tenth of that, but not both everywhere; *no* otherwise.
    """
    stats = result.summary()[variant]
    parts, clear, strong = [], [], []
    for probe in PROBES:
        gains = result.values(variant, f"follow_{probe}")
        gains = gains[~np.isnan(gains)]
        if len(gains) == 0:
            continue
        se = float(gains.std(ddof=1) / math.sqrt(len(gains))) if len(gains) > 1 else math.inf
        mean = float(gains.mean())
        clear.append(mean > 2 * se)
        response = stats[f"response_{probe}"]
        strong.append(not math.isnan(response) and response >= RESPONSE_FOLLOWS)
        parts.append(
            f"{probe}: response {_fmt(stats[f'response_{probe}'], '{:.2f}')}, follow "
            f"{mean:+.2f} ± {se:.2f} dB ({int((gains > 0).sum())}/{len(gains)} chunks positive)"
        )
    if not parts:
        return "not measured (no action probe ran)."
    weak = [
        not math.isnan(stats[f"response_{p}"]) and stats[f"response_{p}"] >= RESPONSE_FOLLOWS / 10
        for p in PROBES
    ]
    if all(clear) and all(strong):
        head = "yes"
    elif any(clear) or any(weak):
        head = "barely (its chunks change with the plan far less than the truth's)"
    else:
        head = "no"
    return f"{head}. " + "; ".join(parts) + "."


def conclusions(result: QualityResult) -> list[str]:
    """The evaluation's questions, answered from the numbers (markdown list items)."""
    have = set(result.variants)
    both = ("psnr", "ssim")
    # LPIPS joins the best-floor questions where it was scored: the floor that wins PSNR by
    # blurring does not win it.
    fidelity = (*both, "lpips") if _measured(result, "lpips") else both
    lines = []
    label = "(a) trained beats the best floor on each metric"
    if "trained" in have:
        lines.append(f"- **{label}**: {beats_best_floor(result, 'trained', fidelity)}")
    else:
        lines.append(f"- **{label}**: not measured (variant missing).")
    if "trained_cache" in have:
        label = "(a) trained_cache beats the best floor on each metric"
        lines.append(f"- **{label}**: {beats_best_floor(result, 'trained_cache', fidelity)}")
        for other in ("cache_only", "trained"):
            if other in have:
                sentence = _sentence(result, "trained_cache", other, both)
                verdict = _overall(result, "trained_cache", other, both)
                lines.append(f"- **(e) trained_cache vs {other}**: {verdict}. {sentence}.")
    if "cache_conditioned" in have:
        label = "(a) cache_conditioned beats the best floor on each metric"
        lines.append(f"- **{label}**: {beats_best_floor(result, 'cache_conditioned', fidelity)}")
        for other in ("trained_cache", "cache_only"):
            if other in have:
                sentence = _sentence(result, "cache_conditioned", other, both)
                verdict = _overall(result, "cache_conditioned", other, both)
                lines.append(f"- **(f) cache_conditioned vs {other}**: {verdict}. {sentence}.")
    questions = (
        ("(a) trained beats the untrained model", "untrained", both),
        ("(b) memory helps (trained vs no_memory)", "no_memory", both),
        (
            "(c) cross-agent attention helps (trained vs no_cross_agent)",
            "no_cross_agent",
            (*both, "psnr_overlap", "ssim_overlap"),
        ),
    )
    for label, other, metrics in questions:
        if "trained" not in have or other not in have:
            lines.append(f"- **{label}**: not measured (variant missing).")
            continue
        verdict = _overall(result, "trained", other, metrics)
        lines.append(f"- **{label}**: {verdict}. {_sentence(result, 'trained', other, metrics)}.")
    models = [v for v in result.variants if v in VARIANTS and VARIANTS[v].is_model]
    for variant in models:
        lines.append(
            f"- **(d) {variant} follows the action** (1 = responds as the world does, 0 = "
            f"ignores it): {follows_action(result, variant)}"
        )
    for other, what in (
        ("repeat", "the sharp first frame repeated, the former baseline"),
        ("repeat_oracle", "a baseline given the true frame at every chunk start"),
        ("autoencoder", "the VAE's reconstruction of the true chunk, the latent space's ceiling"),
    ):
        if "trained" in have and other in have:
            sentence = _sentence(result, "trained", other, ("psnr", "ssim"))
            lines.append(f"- *For reference*, trained vs {other} ({what}): {sentence}.")
    return lines


def _sigmas(cfg: dict[str, Any]) -> str:
    sigmas = cfg.get("blur_sigmas")
    if not sigmas:
        return "?"
    return f"{sigmas[0]:g} px per view in the first chunk, {sigmas[1]:g} px after"


def summary_markdown(result: QualityResult, command: str | None = None) -> str:
    """The whole ``summary.md``: settings, the table, the conclusions and the variants."""
    cfg = result.config
    lines = ["# ShareVerse quality against the exact renderer", ""]
    if command:
        lines += ["```", command, "```", ""]
    agents = len({r.agent for r in result.rows})
    steps = cfg.get("num_inference_steps")
    steps_note = f" at {steps} sampler steps" if steps else ""
    actions = action_table(result)
    consistency = consistency_table(result)
    regions = regions_table(result)
    regions_note = (
        "*Where the chunk must be generated* (the same pixels for every variant): *holes* = "
        "the pixels that the episode's exact first frames, lifted into the scene cache, do not "
        "cover in the chunk's cameras, plus the other cars' boxes; *cars* = those boxes alone; "
        "*seam* = fine detail (luma gradient energy) in a one-pixel band along the holes' edge, "
        "generated over true (1: no seam, above 1: a visible edge, below 1: blurred there)."
    )
    consistency_note = (
        "*Cross-agent consistency*: for every pixel of one agent's frame that the other agent "
        "also sees (exact correspondences from the true depth and poses), the mean absolute "
        "colour difference (grey levels, mean over R, G, B) to its projection in the other "
        "agent's frame of the same variant at the same time; *agree* = the share within "
        f"{AGREE_TOLERANCE:g} grey levels; *excess* = the difference beyond the truth's own "
        "(view-dependent shading and fog make even the exact renderer's frames differ)."
    )
    lines += [
        f"Data: `{cfg.get('data', '?')}` split `{cfg.get('split', '?')}`, "
        f"{len(cfg.get('sequences', []))} sequences × {agents} agents × {result.num_chunks} "
        f"chunks of 28 frames; model `{cfg.get('model', '?')}`"
        f"{steps_note}; seed {cfg.get('seed', '?')}. "
        f"PSNR per frame (capped at {cfg.get('psnr_cap_db', '?')} dB) and SSIM per frame "
        "(Gaussian σ = 1.5, 11×11, per RGB channel, per camera view), averaged over frames, "
        "agents, chunks and sequences; *overlap* = only the pixels the other agent also sees; "
        "*detail* = the frame's fine detail (luma gradient energy) over the true frame's, "
        "1 as sharp as the truth, below 1 blurred (PSNR and SSIM favour blur under "
        "uncertainty: read them next to it); *LPIPS* = the learned perceptual distance "
        "(AlexNet, per camera view; 0 identical, **lower is better**; a blurred frame scores "
        "worse than a sharp one slightly off), n/a where it was not scored.",
        "",
        summary_table(result),
        "",
        "*Floors* (made from the conditioning frame alone): "
        + ", ".join(f"`{f}`" for f in FLOORS)
        + f" (blur σ = {_sigmas(cfg)}). *response* = how much a "
        "variant's chunk changes when the plan changes, over how much the true chunk changes "
        "(1 like the world, 0 ignores the action); *follow* = PSNR under the true plan minus "
        "PSNR under the probe's plan, against the true chunk (positive: follows the action). "
        "Probes: `still` (every car stands still) and `lateral` (every car's plan shifted "
        "2 m to the left by the chunk's end).",
        "",
        *([actions, ""] if actions else []),
        *([consistency_note, "", consistency, ""] if consistency else []),
        *([regions_note, "", regions, ""] if regions else []),
        "## Conclusions",
        "",
        "Computed from the numbers over paired chunks (same sequence, agent and chunk): a mean "
        "difference is clear when it exceeds twice the standard error of the paired "
        "differences; failing that, a sign test with p < 0.05 says which variant wins most "
        "chunks.",
        "",
        *conclusions(result),
        "",
        "## Variants",
        "",
        *(f"- `{v}`: {VARIANTS[v].description}" for v in result.variants if v in VARIANTS),
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_drift(result: QualityResult, path: str | os.PathLike) -> Path:
    """``drift.png``: mean PSNR and SSIM per chunk index for every variant (± standard error)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), dpi=100)
    chunks = np.arange(result.num_chunks)
    for variant in result.variants:
        known = VARIANTS.get(variant)
        style = "--" if known is not None and not known.is_model else "-"
        for ax, metric in zip(axes, ("psnr", "ssim"), strict=True):
            means, errs = [], []
            for k in chunks:
                v = result.values(variant, metric, int(k))
                v = v[~np.isnan(v)]
                means.append(v.mean() if len(v) else np.nan)
                errs.append(v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0.0)
            ax.errorbar(chunks, means, yerr=errs, marker="o", ls=style, capsize=3, label=variant)
    for ax, name in zip(axes, ("PSNR (dB)", "SSIM"), strict=True):
        ax.set_xlabel("chunk index (28 frames each, autoregressive)")
        ax.set_ylabel(name)
        ax.set_xticks(chunks)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=8, frameon=False)
    fig.suptitle("Drift: quality per chunk against the exact renderer (mean ± s.e.)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.85, 1))
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_action_sensitivity(result: QualityResult, path: str | os.PathLike) -> Path | None:
    """``actions.png``: every variant's response and follow per action probe (bars).

    Response 1 (dashed line) is the world's; 0 ignores the action. Returns ``None`` when no
    probe ran.
    """
    summary = result.summary()
    probes = [
        p for p in PROBES if any(not math.isnan(s[f"response_{p}"]) for s in summary.values())
    ]
    if not probes:
        return None
    plt = _pyplot()
    variants = list(summary)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), dpi=100)
    x = np.arange(len(variants))
    width = 0.8 / len(probes)
    for j, probe in enumerate(probes):
        for ax, key in zip(axes, ("response", "follow"), strict=True):
            values = [summary[v][f"{key}_{probe}"] for v in variants]
            ax.bar(x + (j - (len(probes) - 1) / 2) * width, values, width, label=probe)
    axes[0].axhline(1.0, color="k", ls="--", lw=0.8)
    axes[0].set_ylabel("response (chunk change / true change)")
    axes[1].axhline(0.0, color="k", lw=0.8)
    axes[1].set_ylabel("follow: PSNR true plan − probe plan (dB)")
    for ax in axes:
        ax.set_xticks(x)
        ax.set_xticklabels(variants, rotation=30, ha="right", fontsize=8)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8, frameon=False)
    fig.suptitle("Action sensitivity: does the chunk change with the plan as the truth does?")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def sample_columns(num_chunks: int, per_chunk: int = 3) -> list[int]:
    """Frame offsets (into the concatenated new frames) shown by :func:`plot_samples`.

    ``per_chunk`` frames spread over each chunk, always including the chunk's first and last.
    """
    offsets = np.linspace(0, 27, per_chunk).round().astype(int)
    return [28 * k + int(o) for k in range(num_chunks) for o in offsets]


def plot_samples(
    result: QualityResult, path: str | os.PathLike, per_chunk: int = 3, colours: int = 128
) -> Path | None:
    """``samples.png``: generated vs true frames of both agents for the sample sequence.

    Rows: for each agent, the generated frames then the true ones; columns: ``per_chunk``
    frames of each chunk, labelled with the frame index. The PNG is palette-quantised to
    ``colours`` colours to stay small. Returns ``None`` when the result holds no samples.
    """
    if not result.samples:
        return None
    plt = _pyplot()
    gen, truth = result.samples["generated"], result.samples["truth"]
    agents, total = gen.shape[:2]
    cols = sample_columns(total // 28, per_chunk)
    h, w = gen.shape[2:4]
    scale = 1.0 / 100  # one figure inch per 100 frame pixels, saved at dpi 100: native size
    fig, axes = plt.subplots(
        2 * agents,
        len(cols),
        figsize=(len(cols) * w * scale, 2 * agents * h * scale + 0.6),
        dpi=100,
        squeeze=False,
    )
    for a in range(agents):
        for row, (label, frames) in enumerate(((result.samples["variant"], gen), ("truth", truth))):
            for c, t in enumerate(cols):
                ax = axes[2 * a + row, c]
                ax.imshow(frames[a, t], interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if c == 0:
                    ax.set_ylabel(f"agent {a}\n{label}", fontsize=7)
                if a == 0 and row == 0:
                    ax.set_title(f"chunk {t // 28}, frame {t + 1}", fontsize=7)
    fig.suptitle(f"sequence {result.samples['sequence']}: generated vs ground truth", fontsize=9)
    fig.subplots_adjust(left=0.04, right=0.995, top=0.9, bottom=0.005, wspace=0.03, hspace=0.05)
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    _quantise(path, colours)
    return path


def _quantise(path: Path, colours: int) -> None:
    """Rewrite a PNG with an adaptive palette (Pillow comes with matplotlib)."""
    from PIL import Image

    with Image.open(path) as img:
        small = img.convert("RGB").quantize(colours, dither=Image.Dither.NONE)
    small.save(path, optimize=True)
