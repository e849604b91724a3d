"""Packed weights for the few rows of a decode step: the `int4` numeric format.

A decode step of one chat multiplies one row of activations by every weight matrix, so its speed is the
speed of reading the weights. In bfloat16 the bundled model's linear layers are 270 MB a step. torch has
CPU kernels that multiply bfloat16 rows by packed weights without unpacking the matrix first:
- 4 bits with a scale and an offset per group of 32 weights (`_weight_int4pack_mm_for_cpu`). The bundled
  GGUF file stores its projections in exactly this shape (Q4_1: 32 weights, a scale and a minimum per
  block), so re-packing them is lossless: a layer gets 4 bits only when its weights already lie on such a
  grid (checked per layer), never by rounding a finer weight to 4 bits;
- 8 bits with a scale per output row (`_weight_int8pack_mm`) for every other layer, such as the output
  head, which the GGUF keeps in 8 bits (Q8_0).

With many rows (a prefill, or a batch of many chats) the plain product is faster again, so each layer
keeps both and picks by the number of rows: up to `max_rows`, measured for each kind and shape by timing
both kernels on this CPU, the packed one; above it, the plain weights. The kernels take bfloat16 rows
only; the rest of the model runs in bfloat16 (format `int4`) or in float32 (`int4-float32`: rows are cast
to bfloat16 for the packed product). CPUs without bfloat16 arithmetic (AVX2) emulate it: there a prefill
in bfloat16 takes four times as long as in float32 (measured on an AVX2 EPYC: 100 tokens 1.66 s against
0.41 s). Both are candidates that `MODEL_DTYPE=auto` measures; each is kept only where it is faster and
stays close to float32.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

__all__ = ["GROUP", "PackedLinear", "PackedWeights", "pack_linears"]

GROUP = 32  # weights per scale and offset, as in GGUF's Q4_1 blocks
KERNEL_DTYPE = torch.bfloat16  # what the packed kernels multiply (rows and scales); fast on every x86 CPU
_ROWS = (1, 2, 4, 8, 16, 32)
# the int4 kernel's packing lays out output rows in blocks of 64: two packs side by side are one pack
# only when the first has whole blocks (tried: 96 + 32 rows joined give wrong products, 128 + 64 right)
_INT4_BLOCK = 64
_ON_GRID = 1e-3  # a weight this close (in grid steps) to its group's 4-bit grid is on it


def _groups(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(4-bit codes, groups, minimum, step) of a [out, in] matrix, asymmetric per group of GROUP."""
    rows, cols = weight.shape
    groups = weight.float().reshape(rows, cols // GROUP, GROUP)
    low, high = groups.amin(-1, keepdim=True), groups.amax(-1, keepdim=True)
    step = ((high - low) / 15).clamp(min=1e-10)
    codes = ((groups - low) / step).round().clamp(0, 15)
    return codes, groups, low, step


def on_4bit_grid(weight: torch.Tensor) -> bool:
    """Whether every group of GROUP weights is exactly a minimum plus 0..15 steps (a Q4_1 block)."""
    return _on_grid(*_groups(weight))


def _on_grid(codes: torch.Tensor, groups: torch.Tensor, low: torch.Tensor, step: torch.Tensor) -> bool:
    return bool(((codes * step + low - groups).abs() / step).max() <= _ON_GRID)


def _pack_int4(
    shape: torch.Size, codes: torch.Tensor, low: torch.Tensor, step: torch.Tensor, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    rows = shape[0]
    # the kernel computes (code - 8) * scale + offset, so the offset is the group's minimum plus 8 steps
    scales = torch.stack([step.reshape(rows, -1), (low + 8 * step).reshape(rows, -1)], dim=-1)
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes.to(torch.int32).reshape(shape), 1)
    return packed, scales.transpose(0, 1).contiguous().to(dtype)


def _pack_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    scale = (weight.float().abs().amax(1) / 127).clamp(min=1e-10)
    codes = (weight.float() / scale[:, None]).round().clamp(-127, 127).to(torch.int8)
    return codes, scale.to(KERNEL_DTYPE)


@dataclass
class PackedWeights:
    """Every packed layer of a model by name (kind, codes, scales) and the crossover of each shape.

    Packing checks and converts every weight and times both kernels per shape: about 1.5 s of a start
    on 2 cores. Saved next to the format calibration (same key: CPU, torch, threads, weights), a later
    start reads them back instead.
    """

    layers: dict[str, tuple[str, torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    crossovers: dict[str, int] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        tensors = {f"{name}.codes": codes for name, (_, codes, _) in self.layers.items()}
        tensors |= {f"{name}.scales": scales for name, (_, _, scales) in self.layers.items()}
        kinds = {name: kind for name, (kind, _, _) in self.layers.items()}
        metadata = {"kinds": json.dumps(kinds), "crossovers": json.dumps(self.crossovers)}
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".tmp")
        save_file({k: t.contiguous() for k, t in tensors.items()}, str(partial), metadata=metadata)
        partial.replace(path)

    @classmethod
    def load(cls, path: Path) -> PackedWeights | None:
        """What `save` wrote at `path`; None when there is nothing readable there."""
        try:
            with safe_open(str(path), "pt") as file:
                # copies, not views of the file: its tensors lie where its header ends, 8-byte aligned, and
                # torch's int8 kernel needs 64 (4 rows crashed with SIGSEGV on an AVX-512 EPYC at offset 2440)
                tensors = {key: file.get_tensor(key).clone() for key in file.keys()}  # noqa: SIM118
                metadata = file.metadata()
            kinds: dict[str, str] = json.loads(metadata["kinds"])
            layers = {
                name: (kind, tensors[f"{name}.codes"], tensors[f"{name}.scales"])
                for name, kind in kinds.items()
            }
            return cls(layers, json.loads(metadata["crossovers"]))
        except (OSError, ValueError, KeyError, SafetensorError):
            return None


class PackedLinear(nn.Module):
    """A bias-free linear layer with plain weights and a packed copy; few rows use the packed one."""

    packed: torch.Tensor  # buffers: the codes and their scales (and offsets, for int4)
    scales: torch.Tensor

    def __init__(
        self,
        linear: nn.Linear,
        max_rows: int = 1 << 30,
        saved: tuple[str, torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        """4 bits where the weights lie on a 4-bit grid (checked and packed from one pass), else 8;
        `saved`: (kind, codes, scales) packed before from these same weights."""
        super().__init__()
        self.weight, self.max_rows = linear.weight, max_rows
        self.joined_rows: int | None = None  # the crossover of the product this layer is joined into
        if saved is not None:
            self.kind, packed, scales = saved
        else:
            self.kind, packed, scales = _pack(linear.weight.data)
        self.register_buffer("packed", packed, persistent=False)
        self.register_buffer("scales", scales, persistent=False)

    @classmethod
    def joined(cls, parts: list[PackedLinear]) -> PackedLinear | None:
        """One layer that computes `parts` side by side (outputs concatenated): one kernel call instead of
        several. The parts' codes and plain weights become views of the joined layer's, so memory does not
        grow. None when the parts are not all of one kind, or their int4 packs do not line up."""
        kind = parts[0].kind
        if any(part.kind != kind for part in parts):
            return None
        if kind == "int4" and any(part.weight.shape[0] % _INT4_BLOCK for part in parts[:-1]):
            return None
        plain = nn.Linear(1, 1, bias=False, dtype=parts[0].weight.dtype)
        plain.weight = nn.Parameter(torch.cat([part.weight.data for part in parts]), requires_grad=False)
        packed = torch.cat([part.packed for part in parts])
        scales = torch.cat([part.scales for part in parts], dim=1 if kind == "int4" else 0)
        measured = {part.joined_rows for part in parts}
        rows = measured.pop() if len(measured) == 1 and None not in measured else None
        max_rows = rows if rows is not None else min(part.max_rows for part in parts)
        joined = cls(plain, max_rows, saved=(kind, packed, scales))
        sizes = [part.weight.shape[0] for part in parts]
        views = zip(torch.split(plain.weight.data, sizes), torch.split(packed, sizes), strict=True)
        for part, (weight, codes) in zip(parts, views, strict=True):
            part.weight.data, part.packed = weight, codes
        return joined

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2 and x.is_contiguous():  # the engine's own forward keeps its rows flat
            return self._rows(x)
        out = self._rows(x.reshape(-1, x.shape[-1]).contiguous())  # the kernels read rows in place
        return out.reshape(*x.shape[:-1], out.shape[-1])

    def _rows(self, flat: torch.Tensor) -> torch.Tensor:
        """The product for contiguous [rows, in] inputs; each call that is not needed is left out (a one-row
        step makes some 120 of these calls, where a torch call costs about as much as a small product)."""
        if flat.shape[0] > self.max_rows:
            return nn.functional.linear(flat, self.weight)
        kernel_dtype = flat.dtype == KERNEL_DTYPE
        rows = flat if kernel_dtype else flat.to(KERNEL_DTYPE)
        if self.kind == "int4":
            out: torch.Tensor = torch.ops.aten._weight_int4pack_mm_for_cpu(
                rows, self.packed, GROUP, self.scales
            )
        else:
            out = torch.ops.aten._weight_int8pack_mm(rows, self.packed, self.scales)
        return out if kernel_dtype else out.to(flat.dtype)


def _pack(weight: torch.Tensor) -> tuple[str, torch.Tensor, torch.Tensor]:
    codes, groups, low, step = _groups(weight)
    if _on_grid(codes, groups, low, step):
        return ("int4", *_pack_int4(weight.shape, codes, low, step, KERNEL_DTYPE))
    return ("int8", *_pack_int8(weight))


def crossover(layers: list[PackedLinear]) -> int:
    """The most rows for which the packed product beats the plain one on this CPU (0: it never does).

    Timed over every layer of one shape in turn, as a forward pass reads them: one matrix multiplied
    again and again stays in the CPU's cache, where plain float32 weights look as cheap as packed ones
    (measured on an AVX2 EPYC: the crossover of a 1536x576 projection came out at 8 rows from one hot
    layer, and a batch of 16 chats ran a third slower in float32 than with the packed weights).
    """
    first = layers[0]
    repeats = max(2, min(20, 2_000_000 // (first.weight.numel() * len(layers))))
    best = 0
    plain = [nn.Linear(1, 1, bias=False, dtype=first.weight.dtype) for _ in layers]
    for layer, twin in zip(layers, plain, strict=True):
        layer.max_rows, twin.weight = 1 << 30, layer.weight
    with torch.inference_mode():
        for rows in _ROWS:
            x = torch.randn(rows, first.weight.shape[1], dtype=first.weight.dtype)
            if _seconds(layers, x, repeats) < _seconds(plain, x, repeats):
                best = rows
    return best


def _seconds(layers: list[PackedLinear] | list[nn.Linear], x: torch.Tensor, repeats: int) -> float:
    for layer in layers:  # warm-up: the kernels' first call, not the weights (they cannot all stay cached)
        layer(x)
    started = time.perf_counter()
    for _ in range(repeats):
        for layer in layers:
            layer(x)
    return time.perf_counter() - started


def pack_linears(
    model: nn.Module,
    dtype: torch.dtype = torch.bfloat16,
    saved: PackedWeights | None = None,
    joins: Sequence[Sequence[str]] = (),
) -> PackedWeights:
    """Convert `model` (float32, in place) to `dtype` (bfloat16 or float32) with a packed copy of every
    eligible linear layer.

    Eligible: no bias and an input size divisible by GROUP (the projections and output head of the
    supported decoders). 4 bits where the float32 weights lie on a 4-bit grid, 8 bits elsewhere. Returns
    the packed layers and the crossover in rows per kind and shape, as {"int4 1536x576": 8}, each
    measured once in `dtype`. `saved`: what an earlier call returned for these weights on this machine;
    its layers and crossovers are used as they are (a layer it lacks is packed and measured). `joins`:
    the layers a forward multiplies side by side (`PackedLinear.joined`), by their names within a block,
    such as ("gate_proj", "up_proj"): their joined products get crossovers of their own.
    """
    layers: dict[str, PackedLinear] = {}
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Linear) and module.bias is None and module.in_features % GROUP == 0:
            earlier = saved.layers.get(name) if saved else None
            if earlier is not None and earlier[1].shape[0] != module.out_features:
                earlier = None  # not these weights after all
            packed = PackedLinear(module, saved=earlier)
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, packed)
            layers[name] = packed
    model.to(dtype)  # the packed codes are integers and stay as they are; the scales go back to the kernels'
    for layer in layers.values():
        layer.scales = layer.scales.to(KERNEL_DTYPE)
    result = PackedWeights(crossovers=dict(saved.crossovers) if saved else {})
    shapes: dict[str, list[PackedLinear]] = {}
    for name, layer in layers.items():
        result.layers[name] = (layer.kind, layer.packed, layer.scales)
        shapes.setdefault(f"{layer.kind} {layer.weight.shape[0]}x{layer.weight.shape[1]}", []).append(layer)
    for shape, alike in shapes.items():
        if shape not in result.crossovers:
            result.crossovers[shape] = crossover(alike)
        for layer in alike:
            layer.max_rows = result.crossovers[shape]
    for names in joins:
        _joined_crossovers(layers, names, result.crossovers)
    return result


def _joined_crossovers(
    layers: dict[str, PackedLinear], names: Sequence[str], crossovers: dict[str, int]
) -> None:
    """Measure (or read from `crossovers`) the crossover of the products that join the layers `names` of
    each block, and tell the layers (`joined_rows`). A joined product is a wider matrix than its parts,
    and its crossover is its own: on an AVX-512 EPYC gate and up came out at 8 rows each and joined at
    16, where a batch of 16 chats stepped 7 % faster with the packed product (53.8 against 58.1 ms)."""
    blocks: dict[str, list[list[PackedLinear]]] = {}
    for name in layers:
        block, _, last = name.rpartition(".")
        parts = [layers.get(f"{block}.{part}") for part in names]
        if last == names[0] and all(part is not None for part in parts):
            found = [part for part in parts if part is not None]
            shape = "+".join(str(part.weight.shape[0]) for part in found)
            blocks.setdefault(f"{found[0].kind} {shape}x{found[0].weight.shape[1]}", []).append(found)
    for key, groups in blocks.items():
        if key not in crossovers:
            joined = [PackedLinear.joined(group) for group in groups]
            if any(product is None for product in joined):
                continue
            crossovers[key] = crossover([product for product in joined if product is not None])
        for group in groups:
            for layer in group:
                layer.joined_rows = crossovers[key]
