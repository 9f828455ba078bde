"""``shareverse-train`` end to end on a synthesized tiny dataset: VAE, stage 1, stage 2, env."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from shareverse_env.models.loading import load_model, load_pipeline

import shareverse_env
from shareverse_env.cli.data import main as data_main
from shareverse_env.cli.train import main as train_main


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "ds"
    data_main(
        [
            "generate",
            "--out",
            str(root),
            "--sequences",
            "3",
            "--view-hw",
            "32",
            "48",
            "--frames",
            "37",
            "--towns",
            "3",
            "--workers",
            "1",
            "--quiet",
            "--town-blocks",
            "3",
            "3",
        ]
    )
    return root


def test_three_stages_then_the_env_runs_the_trained_pipeline(dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    common = ["--data", str(dataset), "--out", str(run), "--no-progress", "--steps", "2"]
    train_main([*common, "--stage", "vae", "--init", "tiny"])
    train_main([*common, "--stage", "stage1"])
    train_main([*common, "--stage", "stage2"])
    for stage in ("vae", "stage1", "stage2"):
        assert (run / f"log_{stage}.csv").read_text().count("\n") == 3  # header + 2 steps
        assert (run / "checkpoints" / stage / "state.json").is_file()
    exported = load_pipeline(run / "pipeline")
    initial = load_model("tiny")  # what --init tiny started from (the same config and seed)
    # Training moved the weights: the VAE stage trained the VAE and calibrated its scaling
    # factor, stages 1 and 2 the transformer. Two warm-up steps move them by ~5e-6 at most, so a
    # bound far below the spread of a random init also shows that ``initial`` is where they began.
    assert exported.vae.config.scaling_factor != initial.vae.config.scaling_factor
    for component in ("vae", "transformer"):
        trained = getattr(exported, component).state_dict()
        start = getattr(initial, component).state_dict()
        assert trained.keys() == start.keys(), component
        moved = [k for k in trained if not torch.equal(trained[k], start[k])]
        total = len(trained)
        assert len(moved) > total // 2, f"{component}: {len(moved)} of {total} tensors trained"
        distance = max(float((trained[k] - start[k]).abs().max()) for k in trained)
        assert distance < 1e-2, f"{component} is {distance} from its initialisation"

    def one_chunk(model) -> dict[str, np.ndarray]:
        # The model's own frames: with the scene cache, most pixels would be the cache's.
        env = shareverse_env.parallel_env(
            backend="shareverse",
            model=model,
            max_cycles=1,
            backend_options={"scene_cache": False},
        )
        obs, _ = env.reset(seed=0)
        obs, _, _, _, infos = env.step(
            {a: np.array([6.0, 0.0, 0.0], np.float32) for a in env.agents}
        )
        assert obs["agent_0"].shape == (64, 96, 3)
        return {a: info["frames"] for a, info in infos.items()}

    frames = one_chunk(str(run / "pipeline"))
    direct = one_chunk(exported)  # the export, loaded here and handed over as a pipeline
    # The untrained initialisation with the calibrated scaling factor: only the weights differ.
    initial.vae.register_to_config(scaling_factor=exported.vae.config.scaling_factor)
    untrained = one_chunk(initial)
    assert frames.keys() == direct.keys() == untrained.keys()
    for agent, chunk in frames.items():
        assert chunk.shape == (28, 64, 96, 3)
        np.testing.assert_array_equal(chunk, direct[agent])
        # Measured: 5.7% of the values differ (nearly all by one level) after 2 steps per stage.
        changed = np.mean(chunk != untrained[agent])
        assert changed > 0.01, f"{agent}: only {changed:.2%} of the values differ from untrained"


def stage1_args(dataset: Path, out: Path, *extra: str) -> list[str]:
    """A one-step stage-1 command line (plus ``extra`` flags)."""
    return [
        "--data",
        str(dataset),
        "--out",
        str(out),
        "--stage",
        "stage1",
        "--steps",
        "1",
        "--no-progress",
        *extra,
    ]


def test_a_dataset_of_another_resolution_is_refused(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="synthesize with --view-hw 64 96"):
        train_main(stage1_args(dataset, tmp_path / "r", "--init", "small"))


def test_a_new_run_needs_an_init(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--init"):
        train_main(stage1_args(dataset, tmp_path / "r"))


def test_parallel_flag() -> None:
    from shareverse_env.cli.train import parse_args

    base = ["--data", "d", "--out", "o", "--stage", "stage1", "--steps", "1"]
    assert parse_args(base).parallel == "ddp"
    assert parse_args([*base, "--parallel", "fsdp"]).parallel == "fsdp"
    with pytest.raises(SystemExit):
        parse_args([*base, "--parallel", "zero3"])


def test_lr_decay_flags() -> None:
    from shareverse_env.cli.train import parse_args

    base = ["--data", "d", "--out", "o", "--stage", "stage2", "--steps", "1"]
    plain = parse_args(base)
    assert list(plain.lr_decay) == [0, 0] and plain.lr_final == 0.1
    args = parse_args([*base, "--lr-decay", "7000", "1500", "--lr-final", "0.05"])
    assert list(args.lr_decay) == [7000, 1500] and args.lr_final == 0.05
    with pytest.raises(SystemExit):
        parse_args([*base, "--lr-decay", "7000"])
    # A training flag: the encoders do not take it.
    from shareverse_env.cli.train import parse_encode_args, parse_encode_cache_args

    encode = ["--data", "d", "--init", "small", "--out", "o", "--lr-decay", "1", "2"]
    for parse in (parse_encode_args, parse_encode_cache_args):
        with pytest.raises(SystemExit):
            parse(encode)


def encode_tiny_cache_inputs(dataset: Path, tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """A tiny random pipeline saved as ``base``, and its cache-input store of ``dataset`` built
    with ``shareverse-train encode-cache``; returns (base, store, the encode command)."""
    base = tmp_path / "base"
    load_model("tiny").save_pretrained(base)
    store = tmp_path / "cache_inputs"
    encode = ["encode-cache", "--data", str(dataset), "--init", str(base), "--out", str(store)]
    train_main([*encode, "--no-progress"])
    return base, store, encode


def test_cache_fine_tune_from_a_store_then_the_env_runs_it(dataset: Path, tmp_path: Path) -> None:
    from shareverse_env.models.training.cache_data import CacheNoise
    from shareverse_env.models.training.cache_inputs import CacheInputStore, sequence_cache_states

    from shareverse_env.data.reader import SequenceDataset

    base, store, encode = encode_tiny_cache_inputs(dataset, tmp_path)
    # Exactly the inputs rendered on the fly for the same seed (float16 storage).
    data = SequenceDataset(dataset, "train", frames_only=False)
    seq = data[0]
    starts = range(0, seq.frames.shape[1] - 28, 4)
    direct = sequence_cache_states(
        load_model("tiny"), seq.frames, seq.depth, seq.poses, starts, 0, 0, CacheNoise()
    )
    reader = CacheInputStore(store)
    for k, start in enumerate(starts):
        torch.testing.assert_close(
            reader.states(data.ids[0], start), direct[:, k], atol=2e-2, rtol=1e-2
        )
    train_main([*encode, "--no-progress"])  # resumes: nothing left to do
    with pytest.raises(SystemExit, match="noise"):
        train_main([*encode, "--no-progress", "--depth-noise", "0.05"])

    run = tmp_path / "run"
    common = ["--data", str(dataset), "--out", str(run), "--no-progress", "--steps", "2"]
    train_main(
        [
            *common,
            "--stage",
            "stage2",
            "--init",
            str(base),
            "--cache-input",
            "--cache-inputs",
            str(store),
        ]
    )
    exported = load_pipeline(run / "pipeline")
    assert exported.transformer.config.cache_in_channels == 7
    assert exported.transformer.cache_embed.weight.abs().sum() > 0
    env = shareverse_env.parallel_env(
        backend="shareverse",
        model=str(run / "pipeline"),
        max_cycles=1,
        backend_options={"depth_model": False},
    )
    env.reset(seed=0)
    obs, *_ = env.step({a: np.array([8.0, 0.0, 0.0], np.float32) for a in env.agents})
    assert all(o.shape == (64, 96, 3) for o in obs.values())


def test_cache_input_stores_record_their_splat_caps(dataset: Path, tmp_path: Path) -> None:
    import json

    from shareverse_env.models.training.cache_inputs import CacheInputStore

    _, store, encode = encode_tiny_cache_inputs(dataset, tmp_path)
    manifest_path = store / "cache_inputs.json"
    assert json.loads(manifest_path.read_text())["max_footprint"] == [6, 3]  # the env's default
    # A store written before the caps were recorded was rendered at 3 × 3: read as such, it is
    # refused for a build at another cap and completed at its own.
    manifest = json.loads(manifest_path.read_text())
    del manifest["max_footprint"]
    manifest_path.write_text(json.dumps(manifest))
    assert CacheInputStore(store).manifest["max_footprint"] == [3, 3]
    with pytest.raises(SystemExit, match="max_footprint"):
        train_main([*encode, "--no-progress"])
    train_main([*encode, "--no-progress", "--max-footprint", "3", "3"])
    with pytest.raises(SystemExit):
        train_main([*encode, "--no-progress", "--max-footprint", "6"])
