"""MODEL_DTYPE=int4: bfloat16 activations, packed weights for the few rows of a decode step."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from bot.llm.local.int4 import GROUP, PackedLinear, on_4bit_grid, pack_linears
from bot.llm.local.loader import load_model
from tests.llm.test_formats import streams_what_its_own_generate_gives


def q4_1_weight(rows: int, cols: int) -> torch.Tensor:
    """Weights as a Q4_1 GGUF stores them: per block of 32, a step times 0..15 plus the block's minimum."""
    generator = torch.Generator().manual_seed(0)
    q = torch.randint(0, 16, (rows, cols // GROUP, GROUP), generator=generator).float()
    q[..., 0], q[..., 1] = 0, 15  # Q4_1 maps each block's minimum to 0 and its maximum to 15
    step = torch.rand(rows, cols // GROUP, 1, generator=generator) * 0.01 + 0.001
    low = torch.randn(rows, cols // GROUP, 1, generator=generator) * 0.05
    return (q * step + low).reshape(rows, cols)


def linear_with(weight: torch.Tensor) -> nn.Linear:
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        linear.weight.copy_(weight)
    return linear


def test_weights_on_a_4bit_grid_are_packed_in_4_bits_others_in_8() -> None:
    grid = q4_1_weight(96, 128)
    assert on_4bit_grid(grid)
    assert not on_4bit_grid(grid + 1e-4 * torch.randn(96, 128))  # finer than 4 bits: never rounded to 4
    # not a chain: each layer is packed on its own (30 inputs are not whole groups of 32: left as it is)
    model = nn.ModuleList([linear_with(grid), linear_with(torch.randn(64, 96)), nn.Linear(30, 8, bias=False)])
    crossovers = pack_linears(model, torch.bfloat16)
    assert [getattr(m, "kind", None) for m in model] == ["int4", "int8", None]
    assert isinstance(model[0], PackedLinear) and type(model[2]) is nn.Linear
    assert set(crossovers) == {"int4 96x128", "int8 64x96"}
    assert all(m.weight.dtype == torch.bfloat16 for m in model)


def test_packed_layers_multiply_like_the_plain_layer_and_many_rows_use_the_plain_product() -> None:
    for weight in (q4_1_weight(96, 128), torch.randn(96, 128) * 0.05):
        plain = linear_with(weight)
        model = nn.Sequential(linear_with(weight))
        pack_linears(model, torch.bfloat16)
        layer = model[0]
        assert isinstance(layer, PackedLinear)
        layer.max_rows = 4
        x = torch.randn(3, 128, dtype=torch.bfloat16)
        with torch.inference_mode():
            exact = plain(x.float())
            few = layer(x)  # 3 rows: the packed kernel
            many = layer(torch.cat([x, x]))  # 6 rows: the plain bfloat16 product
        assert torch.allclose(few.float(), exact, rtol=0.03, atol=0.03), layer.kind
        assert torch.equal(many, nn.functional.linear(torch.cat([x, x]), layer.weight))


async def test_an_int4_model_streams_what_its_own_generate_gives(tiny_llama_dir: Path) -> None:
    loaded = load_model(str(tiny_llama_dir), dtype="int4", device="cpu")
    assert loaded.format == "int4" and loaded.dtype == torch.bfloat16
    layers = [m for m in loaded.model.modules() if isinstance(m, PackedLinear)]
    assert layers and not [m for m in loaded.model.modules() if type(m) is nn.Linear]
    for layer in layers:
        layer.max_rows = 1  # the packed kernel for every decode step of one chat, whatever this CPU
    await streams_what_its_own_generate_gives(loaded)
