"""MODEL_DTYPE=int4 / int4-float32: packed weights for the few rows of a decode step, bfloat16 or float32
activations."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from bot.llm.local import int4
from bot.llm.local.formats import apply_format
from bot.llm.local.int4 import GROUP, PackedLinear, PackedWeights, on_4bit_grid, pack_linears
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
    packed = pack_linears(model, torch.bfloat16)
    assert [getattr(m, "kind", None) for m in model] == ["int4", "int8", None]
    assert isinstance(model[0], PackedLinear) and type(model[2]) is nn.Linear
    assert set(packed.crossovers) == {"int4 96x128", "int8 64x96"} and set(packed.layers) == {"0", "1"}
    assert all(m.weight.dtype == torch.bfloat16 for m in model)


def test_each_shape_is_timed_once_over_all_its_layers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A forward pass reads every layer once, so the crossover is timed over all layers of a shape in
    turn (one layer timed alone stays in the CPU cache and makes plain weights look cheap)."""
    timed: list[list[int]] = []
    real = int4.crossover

    def recording(layers: list[PackedLinear]) -> int:
        timed.append([id(layer) for layer in layers])
        assert real(layers) in (0, 1, 2, 4, 8, 16, 32)
        return 8

    monkeypatch.setattr(int4, "crossover", recording)
    model = nn.ModuleList(
        [linear_with(q4_1_weight(96, 128)) for _ in range(3)] + [linear_with(torch.randn(64, 96))]
    )
    packed = pack_linears(model, torch.float32)
    assert sorted(map(len, timed)) == [1, 3] and [id(m) for m in model[:3]] in timed
    assert packed.crossovers == {"int4 96x128": 8, "int8 64x96": 8}
    assert all(isinstance(m, PackedLinear) and m.max_rows == 8 for m in model)


def test_layers_a_forward_joins_get_the_crossover_of_their_joined_product(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A joined product is a wider matrix than its parts, with a crossover of its own (AVX-512 EPYC: gate
    and up 8 rows each, joined 16); measured once over every block's joined product, then saved."""
    timed: list[tuple[int, ...]] = []

    def recording(layers: list[PackedLinear]) -> int:
        timed.append(tuple(layer.weight.shape[0] for layer in layers))
        return 16 if layers[0].weight.shape[0] == 256 else 8

    monkeypatch.setattr(int4, "crossover", recording)
    blocks = nn.ModuleList(
        nn.ModuleDict({"gate": linear_with(q4_1_weight(128, 64)), "up": linear_with(q4_1_weight(128, 64))})
        for _ in range(2)
    )
    packed = pack_linears(blocks, torch.bfloat16, joins=[("gate", "up")])
    assert packed.crossovers == {"int4 128x64": 8, "int4 128+128x64": 16}
    assert sorted(timed) == [(128, 128, 128, 128), (256, 256)]  # the parts of both blocks, then both products
    parts = [blocks[0]["gate"], blocks[0]["up"]]
    assert [part.max_rows for part in parts] == [8, 8] and [part.joined_rows for part in parts] == [16, 16]
    joined = PackedLinear.joined(parts)
    assert joined is not None and joined.max_rows == 16
    timed.clear()  # a later start: everything read from what was saved, nothing timed
    again = nn.ModuleList(
        nn.ModuleDict({"gate": linear_with(q4_1_weight(128, 64)), "up": linear_with(q4_1_weight(128, 64))})
        for _ in range(2)
    )
    assert pack_linears(again, torch.bfloat16, packed, joins=[("gate", "up")]).crossovers == packed.crossovers
    assert not timed and again[1]["up"].joined_rows == 16


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_packed_layers_multiply_like_the_plain_layer_and_many_rows_use_the_plain_product(
    dtype: torch.dtype,
) -> None:
    for weight in (q4_1_weight(96, 128), torch.randn(96, 128) * 0.05):
        plain = linear_with(weight)
        model = nn.Sequential(linear_with(weight))
        pack_linears(model, dtype)
        layer = model[0]
        assert isinstance(layer, PackedLinear) and layer.weight.dtype == dtype
        assert layer.scales.dtype == torch.bfloat16  # what the packed kernels take, whatever the model's
        layer.max_rows = 4
        x = torch.randn(3, 128, dtype=dtype)
        with torch.inference_mode():
            exact = plain(x.float())
            few = layer(x)  # 3 rows: the packed kernel
            many = layer(torch.cat([x, x]))  # 6 rows: the plain product in the model's dtype
        assert few.dtype == dtype and torch.allclose(few.float(), exact, rtol=0.03, atol=0.03), layer.kind
        assert torch.equal(many, nn.functional.linear(torch.cat([x, x]), layer.weight))
        with torch.inference_mode():  # [batch, rows, in] and a non-contiguous input: the same products
            assert torch.equal(layer(x[None]), few[None])
            assert torch.equal(layer(x.t().contiguous().t()), few)


def test_packed_weights_saved_once_are_read_back_without_packing_or_timing_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = [q4_1_weight(96, 128), torch.randn(64, 96) * 0.05]
    first = nn.ModuleList([linear_with(w) for w in weights])
    apply_format(first, "int4", keep_original=False, saved=tmp_path / "packed.safetensors")
    assert (tmp_path / "packed.safetensors").is_file()

    def never(*_args: object) -> object:
        raise AssertionError("packed or timed again")

    monkeypatch.setattr(int4, "crossover", never)
    monkeypatch.setattr(int4, "_pack", never)
    second = nn.ModuleList([linear_with(w) for w in weights])
    apply_format(second, "int4", keep_original=False, saved=tmp_path / "packed.safetensors")
    x = torch.randn(1, 128, dtype=torch.bfloat16)
    with torch.inference_mode():
        assert torch.equal(first[0](x), second[0](x)) and torch.equal(
            first[1](x[:, :96]), second[1](x[:, :96])
        )
    assert [(m.kind, m.max_rows) for m in first] == [(m.kind, m.max_rows) for m in second]


def test_saved_weights_are_read_back_aligned_for_the_kernels(tmp_path: Path) -> None:
    """safetensors places tensors 8-byte aligned after its header; torch's int8 kernel reads 64-byte
    aligned (4 rows crashed the process on an AVX-512 EPYC): what is read back is an aligned copy."""
    codes, scales = torch.ones(64, 128, dtype=torch.int8), torch.ones(64, dtype=torch.bfloat16)
    for extra in range(8):  # header lengths that move the data to every 8-byte offset
        path = tmp_path / f"packed{extra}.safetensors"
        PackedWeights({"head": ("int8", codes, scales)}, {"int8 64x128" + "x" * extra: 4}).save(path)
        loaded = PackedWeights.load(path)
        assert loaded is not None
        assert all(t.data_ptr() % 64 == 0 for _, *tensors in loaded.layers.values() for t in tensors)


def test_an_unreadable_saved_file_is_packed_again_and_replaced(tmp_path: Path) -> None:
    saved = tmp_path / "packed.safetensors"
    saved.write_bytes(b"not safetensors")
    model = nn.ModuleList([linear_with(q4_1_weight(96, 128))])
    apply_format(model, "int4", keep_original=False, saved=saved)
    assert model[0].kind == "int4" and PackedWeights.load(saved) is not None


@pytest.mark.parametrize(("name", "dtype"), [("int4", torch.bfloat16), ("int4-float32", torch.float32)])
async def test_an_int4_model_streams_what_its_own_generate_gives(
    tiny_llama_dir: Path, name: str, dtype: torch.dtype, tmp_path: Path
) -> None:
    # its own cache: the packed weights saved for a test model do not belong in the user's cache
    loaded = load_model(str(tiny_llama_dir), dtype=name, device="cpu", cache_dir=tmp_path)
    assert loaded.format == name and loaded.dtype == dtype
    assert {p.dtype for p in loaded.model.parameters()} == {dtype}
    layers = [m for m in loaded.model.modules() if isinstance(m, PackedLinear)]
    assert layers and not [m for m in loaded.model.modules() if type(m) is nn.Linear]
    for layer in layers:  # the packed kernel for every decode step of one chat, whatever this CPU
        layer.max_rows = layer.joined_rows = 1
    await streams_what_its_own_generate_gives(loaded)
