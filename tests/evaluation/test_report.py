"""The report: table, conclusions computed from the numbers, and the figures (no model needed)."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from shareverse_env.models import lpips_net

from shareverse_env.evaluation import lpips
from shareverse_env.evaluation import report as report_module
from shareverse_env.evaluation.quality import ChunkScore, QualityResult, best_floor
from shareverse_env.evaluation.report import (
    compare,
    conclusions,
    plot_action_sensitivity,
    plot_drift,
    plot_samples,
    sample_columns,
    sign_test,
    summary_table,
)


def _result(scores: dict[str, list[float]]) -> QualityResult:
    """One row per score: sequence i // 2, agent i % 2, chunk 0; SSIM = PSNR / 40; detail 0.5."""
    rows = [
        ChunkScore(
            f"{i // 2:06d}", "head_on", "fog", i % 2, 0, variant, p, p / 40, p, p / 40, 0.5, 28, 0.5
        )
        for variant, values in scores.items()
        for i, p in enumerate(values)
    ]
    return QualityResult(rows, {"sequences": ["000000"]})


def _probed(variant: str, agent: int, still: tuple, lateral: tuple) -> ChunkScore:
    """A chunk-0 row with fixed scores and the probes' (change, true change, follow)."""
    return ChunkScore(
        "000000", "head_on", "fog", agent, 0, variant, 16.0, 0.4, 16.0, 0.4, 0.5, 28, 0.5,
        *still, *lateral,
    )  # fmt: skip


def test_sign_test() -> None:
    assert sign_test(22, 24) == pytest.approx(2 * (1 + 24 + 276) / 2**24)
    assert sign_test(12, 24) == 1.0
    assert sign_test(2, 24) == sign_test(22, 24)
    assert math.isnan(sign_test(0, 0))


def test_verdicts_follow_the_numbers() -> None:
    base = [15.0, 16.0, 17.0, 18.0, 15.5, 16.5, 17.5, 18.5]
    steady = [b + 1.0 + 0.01 * i for i, b in enumerate(base)]
    # Seven small wins and one large loss: the mean is within noise, the sign test is not.
    spiky = [b + 0.5 for b in base[:7]] + [base[7] - 6.0]
    noisy = [b + (0.5 if i % 2 else -0.5) for i, b in enumerate(base)]
    result = _result({"trained": base, "steady": steady, "spiky": spiky, "noisy": noisy})
    assert compare(result, "steady", "trained", "psnr")["verdict"] == "better"
    assert compare(result, "trained", "steady", "psnr")["verdict"] == "worse"
    spike = compare(result, "spiky", "trained", "psnr")
    assert spike["wins"] == 7 and spike["n"] == 8
    assert spike["verdict"] == "no clear difference"  # 7/8: sign test p = 0.07
    assert compare(result, "noisy", "trained", "psnr")["verdict"] == "no clear difference"
    assert compare(result, "trained", "absent", "psnr")["verdict"] == "not measured"


def test_sign_test_verdict_when_the_mean_hides_a_consistent_win() -> None:
    base = list(np.linspace(14.0, 19.0, 12))
    spiky = [b + 0.5 for b in base[:11]] + [base[11] - 12.0]
    c = compare(_result({"trained": base, "spiky": spiky}), "spiky", "trained", "psnr")
    assert abs(c["diff"]) < 2 * c["se"] and c["sign_p"] < 0.05
    assert c["verdict"] == "better in most chunks"


def test_conclusions_and_table() -> None:
    base = [15.0, 16.0, 17.0, 18.0]
    result = _result(
        {
            "trained": base,
            "repeat": [b - 1 for b in base],
            "untrained": [b - 5 for b in base],
            "no_memory": [b - 1.1 for b in base],
            "no_cross_agent": [b + 1.2 for b in base],
        }
    )
    lines = conclusions(result)
    assert lines[0].startswith("- **(a) trained beats the best floor on each metric**: yes.")
    assert "vs repeat, psnr" in lines[0] and "vs repeat, ssim" in lines[0]
    assert lines[2].startswith("- **(b) memory helps (trained vs no_memory)**: yes.")
    assert "no, it is worse" in lines[3] and "psnr_overlap" in lines[3]
    assert "not measured (no action probe ran)" in lines[4]
    table = summary_table(result).splitlines()
    assert table[0].startswith(
        "| variant | PSNR all | SSIM all | PSNR overlap | SSIM overlap | LPIPS | detail | response |"
    )
    assert (
        table[2] == "| trained | 16.50 | 0.4125 | 16.50 | 0.4125 | n/a | 0.50 | n/a | n/a | 16.50 |"
    )
    assert table[-1].startswith("| **best floor** | 15.50 (repeat) | 0.3875 (repeat) |")


def test_the_best_floor_is_the_one_to_beat() -> None:
    """A blurred floor above the sharp repeat: beating repeat is then not beating the floor."""
    base = [15.0, 16.0, 17.0, 18.0]
    result = _result(
        {
            "trained": base,
            "repeat": [b - 1 for b in base],
            "repeat_blur": [b + 0.5 + 0.01 * i for i, b in enumerate(base)],
            "mean_colour": [b - 3 for b in base],
        }
    )
    lines = conclusions(result)
    assert lines[0].startswith("- **(a) trained beats the best floor on each metric**: no, it")
    assert "vs repeat_blur, psnr" in lines[0]
    assert any(line.startswith("- *For reference*, trained vs repeat ") for line in lines)
    assert (
        summary_table(result)
        .splitlines()[-1]
        .startswith("| **best floor** | 17.02 (repeat_blur) |")
    )


def test_action_sensitivity_is_summarised_from_the_rows() -> None:
    rows = [
        _probed("trained", i, (change, true_change, follow), (2 * change, true_change, -follow))
        for i, (change, true_change, follow) in enumerate([(1.0, 10.0, 1.0), (3.0, 10.0, 1.5)])
    ]
    result = QualityResult(rows)
    stats = result.summary()["trained"]
    assert stats["response_still"] == pytest.approx(4.0 / 20.0)
    assert stats["response_lateral"] == pytest.approx(8.0 / 20.0)
    assert stats["response"] == pytest.approx(12.0 / 40.0)
    assert stats["follow_still"] == pytest.approx(1.25) and stats["follow"] == pytest.approx(0.0)
    line = conclusions(result)[4]
    assert line.startswith("- **(d) trained follows the action** (1 = responds as the world")
    assert "ignores it): barely (its chunks change" in line  # one clear gain, responses < 0.5
    assert "still: response 0.20, follow +1.25 ± 0.25 dB (2/2 chunks" in line


def test_figures(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    result = _result({"trained": [15.0, 16.0], "repeat": [14.0, 15.5]})
    assert plot_drift(result, tmp_path / "drift.png").stat().st_size > 1000
    assert plot_samples(result, tmp_path / "none.png") is None  # no samples held
    assert plot_action_sensitivity(result, tmp_path / "none.png") is None  # no probe ran
    probed = QualityResult(
        [_probed(v, 0, (c, 10.0, f), (c, 8.0, f)) for v, c, f in (("trained", 2.0, 0.5),
                                                                  ("repeat", 0.0, 0.0))]
    )  # fmt: skip
    assert plot_action_sensitivity(probed, tmp_path / "actions.png").stat().st_size > 1000
    rng = np.random.default_rng(0)
    result.samples = {
        "variant": "trained",
        "sequence": "000000",
        "generated": rng.integers(0, 256, (2, 56, 64, 96, 3), dtype=np.uint8),
        "truth": rng.integers(0, 256, (2, 56, 64, 96, 3), dtype=np.uint8),
    }
    path = plot_samples(result, tmp_path / "samples.png")
    assert path is not None and path.stat().st_size > 1000
    assert sample_columns(2, 3) == [0, 14, 27, 28, 42, 55]


def test_script_writes_every_output(tiny_dataset, tmp_path, capsys, monkeypatch) -> None:
    """``scripts/evaluate_quality.py`` end to end with the baselines (no model to run); LPIPS
    on by default, a clear error without its weights, ``--no-lpips`` to skip it."""
    pytest.importorskip("matplotlib")
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "evaluate_quality.py"
    spec = importlib.util.spec_from_file_location("evaluate_quality_script", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "quality"
    args = ["--data", str(tiny_dataset[0]), "--out", str(out), "--no-progress", "--probes"]
    variants = ["--variants", "repeat", "repeat_oracle"]
    if lpips.lpips_available():
        assert script.main([*args, *variants]) == 0
        saved = QualityResult.from_json(out / "results.json")
        assert saved.config["lpips"] is True
        assert all(0 <= r.lpips < 1 for r in saved.rows)
        assert "| LPIPS |" in (out / "summary.md").read_text()
    with monkeypatch.context() as patch:
        patch.setattr(lpips_net, "WEIGHTS_PACKAGE", "no_such_lpips_weights_package")
        with pytest.raises(SystemExit, match=r"shareverse_env\[lpips\].*--no-lpips"):
            script.main([*args, *variants])
        assert script.main([*args, *variants, "--no-lpips"]) == 0
    saved = QualityResult.from_json(out / "results.json")
    assert saved.config["lpips"] is False and all(math.isnan(r.lpips) for r in saved.rows)
    names = {"results.csv", "results.json", "samples.npz", "summary.md", "drift.png", "samples.png"}
    assert not (out / "actions.png").exists()  # no probe ran
    assert names <= {p.name for p in out.iterdir()}
    assert "| repeat_oracle |" in capsys.readouterr().out
    (out / "summary.md").unlink()
    assert script.main([*args, "--report-only"]) == 0  # redraws from the saved results
    assert "| repeat |" in (out / "summary.md").read_text()
    # A bad --backend-options is refused by name before anything runs.
    for bad, said in (('{"scene_cache": false}', "per variant"), ("[1]", "must be a mapping")):
        with pytest.raises(SystemExit, match=f"--backend-options: .*{said}"):
            script.main([*args, *variants, "--backend-options", bad])


def test_doctests() -> None:
    result = doctest.testmod(report_module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_a_world_like_response_is_a_yes_and_none_is_a_no() -> None:
    def rows(variant: str, change: float, follow: float) -> list[ChunkScore]:
        probe = (change, 10.0)
        return [_probed(variant, a, (*probe, follow + 0.1 * a), (*probe, follow + 0.1 * a))
                for a in range(3)]  # fmt: skip

    result = QualityResult(rows("trained", 9.0, 3.0) + rows("no_memory", 0.0, 0.0))
    lines = [line for line in conclusions(result) if line.startswith("- **(d)")]
    assert "follows the action** (1 = responds as the world does, 0 = ignores it): yes." in lines[0]
    assert "ignores it): no." in lines[1]


def _load_script(name: str):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{name}_script", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_compare_results_pairs_variants_of_two_runs(tmp_path, capsys) -> None:
    """``scripts/compare_results.py``: the rows of two runs pair up by episode, as in one run."""
    base = [15.0, 16.0, 17.0, 18.0, 15.5, 16.5, 17.5, 18.5]
    later = [b + 1.0 + 0.01 * i for i, b in enumerate(base)]
    one = _result({"trained": base, "other": [0.0] * 8})
    two = _result({"cache_conditioned": later})
    one.to_json(tmp_path / "one.json")
    two.to_json(tmp_path / "two.json")
    script = _load_script("compare_results")
    script.main([f"{tmp_path}/two.json:cache_conditioned", f"{tmp_path}/one.json:trained"])
    table = capsys.readouterr().out
    expected = compare(_result({"a": later, "b": base}), "a", "b", "psnr")
    assert f"| psnr | {expected['mean_first']:.4f} | {expected['mean_second']:.4f} |" in table
    assert "| 8/8 | better |" in table
    with pytest.raises(SystemExit, match="no rows of variant 'missing'"):
        script.main([f"{tmp_path}/two.json:missing", f"{tmp_path}/one.json:trained"])
    with pytest.raises(SystemExit, match=r"unknown metric.*'response'.*'psnr_holes'"):
        script.main([f"{tmp_path}/two.json:cache_conditioned", f"{tmp_path}/one.json:trained",
                     "--metrics", "psnr", "response"])  # fmt: skip
    elsewhere = _result({"trained": base})
    elsewhere.config["seed"] = 1
    elsewhere.to_json(tmp_path / "three.json")
    with pytest.raises(SystemExit, match=r"same episodes .*seed"):
        script.main([f"{tmp_path}/two.json:cache_conditioned", f"{tmp_path}/three.json:trained"])


def test_lpips_is_lower_is_better_in_the_table_the_floors_and_the_verdicts() -> None:
    base = [15.0, 16.0, 17.0, 18.0]
    result = _result({"trained": base, "repeat": base, "repeat_blur": base})
    for r in result.rows:  # trained lowest, the blurred floor above the sharp one
        r.lpips = {"trained": 0.20, "repeat": 0.30, "repeat_blur": 0.50}[r.variant] + 0.01 * r.agent
    assert best_floor(result, "lpips") == "repeat"  # the lowest floor
    assert best_floor(result, "psnr") in ("repeat", "repeat_blur")
    c = compare(result, "trained", "repeat", "lpips")
    assert c["diff"] == pytest.approx(-0.10) and c["wins"] == 4 and c["verdict"] == "better"
    assert compare(result, "repeat_blur", "repeat", "lpips")["verdict"] == "worse"
    table = summary_table(result).splitlines()
    assert table[2].split(" | ")[5] == "0.2050"  # trained's LPIPS
    assert "| 0.3050 (repeat) |" in table[-1]  # the best floor's is the lowest
    line = conclusions(result)[0]
    assert "vs repeat, lpips 0.2050 vs 0.3050" in line and "**better**" in line
    # Without LPIPS scores the conclusions do not mention it.
    assert "lpips" not in conclusions(_result({"trained": base, "repeat": base}))[0]
