"""The ShareVerse transformer: base-model equivalence, agent symmetry, memory mask, raymaps."""

from __future__ import annotations

import pytest
import torch
from diffusers import CogVideoXTransformer3DModel
from shareverse_env.models import ShareVerseTransformer, build_transformer, get_spec
from shareverse_env.models.attention import project_qkv
from shareverse_env.models.rope import rope_table

SHAREVERSE_KEYS = {
    "raymap_channels",
    "raymap_every",
    "raymap_origin_scale",
    "cross_agent_every",
    "cross_agent_positions",
    "memory_frames",
    "default_text_tokens",
    "cache_in_channels",
}


def plain_twin(model: ShareVerseTransformer) -> CogVideoXTransformer3DModel:
    """A diffusers CogVideoX transformer holding the same base weights."""
    config = {
        k: v for k, v in model.config.items() if not k.startswith("_") and k not in SHAREVERSE_KEYS
    }
    plain = CogVideoXTransformer3DModel(**config).eval()
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    assert not missing
    assert set(unexpected) == set(model.shareverse_parameter_names())
    return plain


def randomise_additions(model: ShareVerseTransformer, seed: int = 0) -> None:
    """Give the zero-initialised projections values so that the additions have an effect."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in [*model.raymap_encoder.outputs, *(c.proj for c in model.cross_agent_blocks)]:
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) * 0.05)


def inputs(agents: int = 2, frames: int = 3, seed: int = 0, batch: int = 1):
    gen = torch.Generator().manual_seed(seed)
    cfg = get_spec("tiny").transformer
    x = torch.randn(batch, agents, frames, cfg["in_channels"], 8, 12, generator=gen)
    rays = torch.randn(batch, agents, frames, 24, 8, 12, generator=gen)
    memory = torch.randn(batch, agents, 2, cfg["in_channels"], 8, 12, generator=gen)
    memory_rays = torch.randn(batch, agents, 2, 24, 8, 12, generator=gen)
    return x, rays, memory, memory_rays


@pytest.fixture(scope="module")
def model() -> ShareVerseTransformer:
    torch.manual_seed(0)
    return build_transformer("tiny", num_layers=4).eval()


@pytest.mark.parametrize("positions", ["synchronous", "concatenated"])
@pytest.mark.parametrize("agents", [1, 2, 3])
def test_zero_initialised_additions_equal_plain_cogvideox(positions: str, agents: int) -> None:
    torch.manual_seed(1)
    model = build_transformer("tiny", num_layers=4, cross_agent_positions=positions).eval()
    plain = plain_twin(model)
    x, rays, _, _ = inputs(agents=agents, frames=3)
    t = torch.tensor([437])
    with torch.no_grad():
        out = model(x, t, raymaps=rays).sample
        rope = rope_table(16, (4, 6), (4, 6), list(range(3)))
        for a in range(agents):
            ref = plain(x[:, a], torch.zeros(1, 0, 16), t, image_rotary_emb=rope).sample
            torch.testing.assert_close(out[:, a], ref, atol=1e-5, rtol=1e-5)


def test_additions_change_the_output_once_trained(model: ShareVerseTransformer) -> None:
    x, rays, _, _ = inputs()
    with torch.no_grad():
        before = model(x, torch.tensor([300]), raymaps=rays).sample
        trained = build_transformer("tiny", num_layers=4).eval()
        trained.load_state_dict(model.state_dict())
        randomise_additions(trained)
        after = trained(x, torch.tensor([300]), raymaps=rays).sample
    assert (after - before).abs().max() > 1e-3


@pytest.mark.parametrize("with_memory", [False, True])
def test_permuting_agents_permutes_outputs(model: ShareVerseTransformer, with_memory: bool) -> None:
    trained = build_transformer("tiny", num_layers=4).eval()
    trained.load_state_dict(model.state_dict())
    randomise_additions(trained, seed=3)
    x, rays, memory, memory_rays = inputs(agents=3, seed=4)
    perm = torch.tensor([2, 0, 1])
    kwargs = {"memory_states": memory, "memory_raymaps": memory_rays} if with_memory else {}
    permuted = (
        {"memory_states": memory[:, perm], "memory_raymaps": memory_rays[:, perm]}
        if with_memory
        else {}
    )
    with torch.no_grad():
        out = trained(x, torch.tensor([500]), raymaps=rays, **kwargs).sample
        out_perm = trained(
            x[:, perm], torch.tensor([500]), raymaps=rays[:, perm], **permuted
        ).sample
    torch.testing.assert_close(out_perm, out[:, perm], atol=1e-5, rtol=1e-5)
    # The agents do interact: another agent's input changes this agent's output.
    x2 = x.clone()
    x2[:, 1] += 1.0
    with torch.no_grad():
        out2 = trained(x2, torch.tensor([500]), raymaps=rays, **kwargs).sample
    assert (out2[:, 0] - out[:, 0]).abs().max() > 1e-4


def test_concatenated_positions_depend_on_agent_order(model: ShareVerseTransformer) -> None:
    trained = build_transformer("tiny", num_layers=4, cross_agent_positions="concatenated").eval()
    trained.load_state_dict(model.state_dict())
    randomise_additions(trained, seed=3)
    x, rays, _, _ = inputs(agents=2, seed=5)
    perm = torch.tensor([1, 0])
    with torch.no_grad():
        out = trained(x, torch.tensor([500]), raymaps=rays).sample
        out_perm = trained(x[:, perm], torch.tensor([500]), raymaps=rays[:, perm]).sample
    assert (out_perm - out[:, perm]).abs().max() > 1e-5


def test_batch_elements_are_independent(model: ShareVerseTransformer) -> None:
    x, rays, memory, memory_rays = inputs(agents=2, batch=2, seed=6)
    with torch.no_grad():
        both = model(
            x,
            torch.tensor([100, 800]),
            raymaps=rays,
            memory_states=memory,
            memory_raymaps=memory_rays,
        ).sample
        second = model(
            x[1:],
            torch.tensor([800]),
            raymaps=rays[1:],
            memory_states=memory[1:],
            memory_raymaps=memory_rays[1:],
        ).sample
    torch.testing.assert_close(both[1:], second, atol=1e-5, rtol=1e-5)


def _reference_block(block, text, memory, video, temb, temb_memory, rope_memory, rope_video):
    """One CogVideoX block over [text | memory | video] with an explicit dense mask."""
    empty = memory[:, :0]
    n_video, n_text, gate, text_gate = block.norm1(video, text, temb)
    n_memory, _, memory_gate, _ = block.norm1(memory, empty, temb_memory)
    tokens = torch.cat([n_text, n_memory, n_video], dim=1)
    lt, lm = text.shape[1], memory.shape[1]
    q, k, v = project_qkv(block.attn1, tokens)
    # RoPE on memory and video positions, none on text.
    from diffusers.models.embeddings import apply_rotary_emb

    for lo, hi, rope in ((lt, lt + lm, rope_memory), (lt + lm, tokens.shape[1], rope_video)):
        q[:, :, lo:hi] = apply_rotary_emb(q[:, :, lo:hi], rope)
        k[:, :, lo:hi] = apply_rotary_emb(k[:, :, lo:hi], rope)
    size = tokens.shape[1]
    allowed = torch.ones(size, size, dtype=torch.bool)
    allowed[lt : lt + lm, :] = False
    allowed[lt : lt + lm, lt : lt + lm] = True  # memory sees memory only
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    out = block.attn1.to_out[0](out.transpose(1, 2).flatten(2))
    text = text + text_gate * out[:, :lt]
    memory = memory + memory_gate * out[:, lt : lt + lm]
    video = video + gate * out[:, lt + lm :]
    n_video, n_text, gate_ff, text_gate_ff = block.norm2(video, text, temb)
    n_memory, _, memory_gate_ff, _ = block.norm2(memory, empty, temb_memory)
    video = video + gate_ff * block.ff(n_video)
    text = text + text_gate_ff * block.ff(n_text)
    memory = memory + memory_gate_ff * block.ff(n_memory)
    return text, memory, video


def test_memory_stream_equals_the_dense_unidirectional_mask(model: ShareVerseTransformer) -> None:
    block = model.transformer_blocks[1]
    gen = torch.Generator().manual_seed(7)
    dim = model.inner_dim
    text = torch.randn(2, 3, dim, generator=gen)
    memory = torch.randn(2, 2 * 24, dim, generator=gen)
    video = torch.randn(2, 3 * 24, dim, generator=gen)
    temb = torch.randn(2, 32, generator=gen)
    temb_memory = torch.randn(2, 32, generator=gen)
    rope_memory = rope_table(16, (4, 6), (4, 6), [0, 1])
    rope_video = rope_table(16, (4, 6), (4, 6), [4, 5, 6])
    with torch.no_grad():
        ref_text, ref_memory, ref_video = _reference_block(
            block, text, memory, video, temb, temb_memory, rope_memory, rope_video
        )
        new_memory, kv = block.memory_forward(memory, temb_memory, rope_memory)
        new_video, new_text = block(video, text, temb, rope_video, memory_kv=kv)
        # Different noisy tokens: the masked memory outputs must not move.
        _, ref_memory_2, _ = _reference_block(
            block, text, memory, video + 3.0, temb, temb_memory, rope_memory, rope_video
        )
    torch.testing.assert_close(new_memory, ref_memory, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(new_video, ref_video, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(new_text, ref_text, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ref_memory_2, ref_memory)


def test_memory_is_used_and_memory_context_is_reusable(model: ShareVerseTransformer) -> None:
    x, rays, memory, memory_rays = inputs(seed=8)
    t = torch.tensor([600])
    with torch.no_grad():
        without = model(x, t, raymaps=rays).sample
        direct = model(x, t, raymaps=rays, memory_states=memory, memory_raymaps=memory_rays).sample
        context = model.encode_memory(memory, memory_rays)
        cached = model(x, t, raymaps=rays, memory_context=context).sample
        # The cached context stays valid at another timestep and for other noisy latents.
        other = model(x * 0.5, torch.tensor([50]), raymaps=rays, memory_context=context).sample
        other_direct = model(
            x * 0.5,
            torch.tensor([50]),
            raymaps=rays,
            memory_states=memory,
            memory_raymaps=memory_rays,
        ).sample
    assert (direct - without).abs().max() > 1e-4
    torch.testing.assert_close(cached, direct)
    torch.testing.assert_close(other, other_direct)


def test_raymap_of_one_view_only_moves_that_views_tokens(model: ShareVerseTransformer) -> None:
    encoder = model.raymap_encoder
    trained = type(encoder)(model.inner_dim, 2, injections=1)
    with torch.no_grad():
        trained.outputs[0].weight.normal_(std=0.1)
    gen = torch.Generator().manual_seed(9)
    rays = torch.randn(1, 2, 24, 8, 12, generator=gen)  # tiled latent frame: views are 4×6 each
    marked = rays.clone()
    marked[:, 1, :, 4:8, 0:6] += 1.0  # frame 1, lower-left tile: the left camera
    with torch.no_grad():
        delta = (trained(marked) - trained(rays))[0, 0].abs().sum(-1)  # (F·4·6,)
    grid = delta.reshape(2, 4, 6)  # (frames, token rows, token columns); patch 2
    moved = grid > 1e-6
    expected = torch.zeros_like(moved)
    expected[1, 2:4, 0:3] = True
    assert torch.equal(moved, expected)


def test_full_size_config_parameter_count_on_meta_device() -> None:
    spec = get_spec("cogvideox-5b-i2v")
    with torch.device("meta"):
        model = ShareVerseTransformer(**spec.transformer)
        plain = CogVideoXTransformer3DModel(
            **{**spec.transformer, "use_rotary_positional_embeddings": True}
        )
    total = sum(p.numel() for p in model.parameters())
    base = sum(p.numel() for p in plain.parameters())
    dim, layers, time_dim = 48 * 64, 42, 512
    # Per cross-agent block: LayerNormZero (linear time_dim → 6·dim, one affine LayerNorm),
    # attention (q, k, v, out with biases; qk LayerNorms over head_dim), zero-initialised proj.
    norm = time_dim * 6 * dim + 6 * dim + 2 * dim
    attention = 4 * (dim * dim + dim) + 2 * 2 * 64
    cross = (layers // 2) * (norm + attention + dim * dim + dim)
    raymap = 24 * dim * 4 + dim + (layers // 2) * (dim * dim + dim)
    assert 5.5e9 < base < 5.7e9  # CogVideoX-5B-I2V's transformer
    assert total == base + cross + raymap
    assert all(p.is_meta for p in model.parameters())


def test_learned_positions_are_sliced_for_memory_and_chunk() -> None:
    torch.manual_seed(2)
    model = build_transformer(
        "tiny", use_learned_positional_embeddings=True, sample_frames=49, num_layers=2
    ).eval()
    table = model._learned_video_positions()
    assert table.shape[0] == 13  # learned for 13 latent frames, like CogVideoX-5B-I2V
    x, rays, memory, memory_rays = inputs(agents=2, frames=8)
    memory4 = torch.cat([memory, memory], dim=2)
    rays4 = torch.cat([memory_rays, memory_rays], dim=2)
    with torch.no_grad():
        out = model(
            x, torch.tensor([10]), raymaps=rays, memory_states=memory4, memory_raymaps=rays4
        )
    assert out.sample.shape == (1, 2, 8, 4, 8, 12)
    with pytest.raises(ValueError, match="learned positional embedding"):
        model(torch.randn(1, 1, 10, 8, 8, 12), torch.tensor([10]))
    with pytest.raises(ValueError, match="cannot be served"):
        model(torch.randn(1, 1, 2, 8, 16, 12), torch.tensor([10]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hidden_states": torch.randn(1, 2, 3, 5, 8, 12)}, "8 channels"),
        ({"hidden_states": torch.randn(2, 3, 8, 8, 12)}, "must have shape"),
        ({"hidden_states": torch.randn(1, 1, 3, 8, 7, 12)}, "divisible by the patch size"),
        ({"raymaps": torch.randn(1, 2, 3, 12, 8, 12)}, "raymaps must have shape"),
        ({"raymaps": torch.full((1, 2, 3, 24, 8, 12), float("nan"))}, "non-finite"),
        ({"timestep": torch.tensor([1, 2, 3])}, "timestep"),
        ({"memory_states": torch.randn(1, 2, 5, 8, 8, 12)}, "at most 4"),
        ({"memory_states": torch.randn(1, 3, 2, 8, 8, 12)}, "3 agents"),
        ({"encoder_hidden_states": torch.randn(1, 4, 7)}, "encoder_hidden_states"),
    ],
)
def test_bad_input_is_named(model: ShareVerseTransformer, kwargs: dict, message: str) -> None:
    x = inputs()[0]
    call = {"hidden_states": x, "timestep": torch.tensor([5]), "raymaps": None, **kwargs}
    with pytest.raises(ValueError, match=message):
        model(**call)


def test_config_errors() -> None:
    with pytest.raises(ValueError, match="rotary"):
        build_transformer("tiny", use_rotary_positional_embeddings=False)
    with pytest.raises(ValueError, match="cross_agent_positions"):
        build_transformer("tiny", cross_agent_positions="sideways")
    with pytest.raises(ValueError, match="unknown model config"):
        build_transformer("huge")
