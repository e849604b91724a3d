"""The numeric format the model runs in on this CPU: chosen by measuring, not by reading CPU flags.

Which format is fastest depends on the machine: on an AVX-512-BF16/AMX Xeon bfloat16 doubles the speed of
float32; on an AVX2-only EPYC bfloat16 is emulated (fast at one chat, slow at sixteen) and int8 weights
(dynamic quantisation of the linear layers) win at every batch size, but change the small model's
answers; 4-bit weights (int4.py) make one chat several times faster where torch has a fast kernel for
them, with the rest of the model in bfloat16 (`int4`) or, where bfloat16 is emulated and a prefill in it
takes four times as long, in float32 (`int4-float32`). So `MODEL_DTYPE=auto` times each candidate at
first start, decoding at one sequence and at a full batch and reading a prompt (the prefill that sets
a reply's first-token latency), checks that its output stays close to float32's on a fixed text, and
keeps the result in the model cache directory, keyed by everything that could change the answer: the
CPU model and flags, the torch version, the thread count and the weights. Later starts read it back.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import gc
import hashlib
import json
import logging
import platform
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from bot.llm.local.attention import Attention
from bot.llm.local.int4 import PackedWeights, pack_linears
from bot.llm.local.llama import JOINED, LlamaForward
from bot.llm.local.speed import decode_rate, forward_pass, layer_count, prefill_rate

__all__ = [
    "FORMATS",
    "QUALITY_TEXT",
    "Calibration",
    "FormatFigures",
    "apply_format",
    "cached_calibration",
    "calibrate",
    "calibration_key",
    "cpu_description",
    "load_or_calibrate",
    "quality",
]

log = logging.getLogger(__name__)

FORMATS = ("float32", "bfloat16", "int8", "int4", "int4-float32")
ACTIVATIONS = {"int8": torch.float32, "int4": torch.bfloat16, "int4-float32": torch.float32}  # activations
# A quantised format is kept only when, on QUALITY_TEXT, the model's next-token choice agrees with
# float32's at this share of positions or more, and its perplexity is at most this factor above float32's.
MIN_AGREEMENT = 0.90
MAX_PERPLEXITY_RATIO = 1.05
MEASUREMENT = 3  # raised when what is measured changes, so that every machine measures again
DECODE_STEPS = 8
HISTORY_TOKENS = 320  # what each decoded row holds: a system prompt and a turn or two
PREFILL_TOKENS = 96  # a short prompt's worth; a reply's prompt reuses the cached system prompt

QUALITY_TEXT = (
    "Thank you for contacting our support team. Your order number 48213 was shipped on Monday and should "
    "arrive within three to five business days. If the parcel does not arrive by Friday, please reply to "
    "this message and we will open an investigation with the carrier. You can return any unworn item "
    "within thirty days for a full refund; the return label is included in the box. Refunds are paid to "
    "the original payment method within five business days after we receive the parcel back."
)


@dataclass
class FormatFigures:
    """One format's measurement: decode tokens/s alone and at a full batch, prompt tokens/s read at once,
    and its closeness to float32."""

    single_tokens_per_second: float
    batch_tokens_per_second: float
    prefill_tokens_per_second: float
    agreement: float = 1.0  # share of positions where the greedy next token equals float32's
    perplexity_ratio: float = 1.0  # perplexity on QUALITY_TEXT over float32's
    within_tolerance: bool = True
    attention: dict[str, Any] | None = None  # how the engine's forward ran attention (attention.py)


@dataclass
class Calibration:
    """What was measured on this machine and what was chosen; stored as JSON next to the converted model."""

    choice: str
    batch: int
    cpu: str
    torch: str
    threads: int
    figures: dict[str, FormatFigures] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        """One line for the start-up log and `bot config`: the choice and every figure behind it."""
        parts = [
            f"{name} {f.single_tokens_per_second:.1f} tok/s alone, {f.batch_tokens_per_second:.1f} batched, "
            f"{f.prefill_tokens_per_second:.0f} prompt"
            + ("" if name == "float32" else f" agree {f.agreement:.0%} ppl x{f.perplexity_ratio:.3f}")
            + ("" if f.within_tolerance else " (rejected: quality)")
            for name, f in self.figures.items()
        ]
        return (
            f"{self.choice} (measured on {self.cpu}, torch {self.torch}, {self.threads} threads; "
            f"batched = {self.batch} chats: " + "; ".join(parts) + ")"
        )

    def attention(self, name: str) -> Attention | None:
        """How the engine's forward ran attention in format `name` when it was measured (None: unknown)."""
        figures = self.figures.get(name)
        return Attention.from_dict(figures.attention) if figures and figures.attention else None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> Calibration:
        data = json.loads(text)
        figures = {name: FormatFigures(**f) for name, f in data.pop("figures").items()}
        return cls(figures=figures, **data)


def cpu_description() -> tuple[str, str]:
    """The CPU's model name and its feature flags (sorted), from /proc/cpuinfo where there is one."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), ""
    name = flags = ""
    for line in info.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not name:
            name = value.strip()
        elif key.strip() in ("flags", "Features") and not flags:
            flags = " ".join(sorted(value.split()))
    return name or platform.machine(), flags


def calibration_key(weights: Path, *, batch: int, threads: int) -> str:
    """A key that changes with anything that could change the measurement: CPU, torch, threads, weights."""
    cpu, flags = cpu_description()
    setup = f"{torch.__version__}|{threads}|{batch}|{FORMATS}|{MEASUREMENT}"  # new candidates: measure again
    digest = hashlib.sha256(f"{cpu}|{flags}|{setup}".encode())
    for path in sorted(weights.iterdir()) if weights.is_dir() else [weights]:
        if path.is_file() and path.suffix in (".json", ".safetensors", ".bin", ".gguf"):
            digest.update(f"{path.name}:{path.stat().st_size}".encode())
            with path.open("rb") as file:
                digest.update(file.read(1 << 20))
    return digest.hexdigest()[:20]


def apply_format(model: Any, name: str, *, keep_original: bool = True, saved: Path | None = None) -> Any:
    """`model` (float32) converted to format `name`: a copy, or in place when not `keep_original`.

    `saved`: for int4, a file that keeps the packed weights between starts (read when readable, written
    when new or measured further); it must belong to these weights on this machine (`calibration_key`)."""
    if name == "float32":
        return model
    source = copy.deepcopy(model) if keep_original else model
    if name in ("bfloat16", "float16"):
        return source.to(getattr(torch, name))
    if name in ("int4", "int4-float32"):  # packed 4-bit (or 8-bit) weights for the few rows of a step
        earlier = PackedWeights.load(saved) if saved is not None and saved.is_file() else None
        packed = pack_linears(source, ACTIVATIONS[name], earlier, joins=JOINED)
        if saved is not None and (earlier is None or packed.crossovers != earlier.crossovers):
            packed.save(saved)
        log.debug("packed weights are used up to these row counts: %s", packed.crossovers)
        return source
    if name == "int8":
        with warnings.catch_warnings():  # torch.ao's deprecation notice: it still works and is measured
            warnings.simplefilter("ignore")
            return torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]
                source, {torch.nn.Linear}, dtype=torch.qint8, inplace=True
            )
    raise ValueError(f"unknown numeric format {name!r}")


def quality(reference: Any, candidate: Any, ids: torch.Tensor) -> tuple[float, float]:
    """(greedy next-token agreement with `reference`, perplexity ratio) on the token row `ids`."""
    with torch.inference_mode():
        ref = reference(input_ids=ids).logits[0, :-1].float()
        out = candidate(input_ids=ids).logits[0, :-1].float()
    target = ids[0, 1:]
    agreement = float((ref.argmax(-1) == out.argmax(-1)).float().mean())
    ref_nll = torch.nn.functional.cross_entropy(ref, target)
    out_nll = torch.nn.functional.cross_entropy(out, target)
    return agreement, float(torch.exp(out_nll - ref_nll))


def calibrate(model: Any, tokenizer: Any, *, batch: int, formats: tuple[str, ...] = FORMATS) -> Calibration:
    """Time every format on `model` (float32) and choose the fastest that keeps float32's quality.

    Formats are measured back to back in one process, through the forward pass the engine will run them
    with (speed.py; a few decode steps each after a warm-up step, so the whole calibration stays short on
    a small machine). The choice maximises the worst of its three
    ratios to the fastest format (one chat, `batch` chats, reading a prompt): the format never far off.
    """
    started = time.perf_counter()
    ids = torch.tensor([tokenizer.encode(QUALITY_TEXT)])
    history = ids.repeat(1, -(-HISTORY_TOKENS // ids.shape[1]))[:, :HISTORY_TOKENS]
    text = ids[:, :PREFILL_TOKENS]
    figures, layers = {}, layer_count(model)
    for name in formats:  # one copy at a time: several float32 copies of a bigger model would not fit
        # the engine's forward joins a Llama's projections in place: never the caller's model's
        variant = apply_format(model, name) if name != "float32" else copy.deepcopy(model)
        forward = forward_pass(variant, lean=True)
        alone, batched = (decode_rate(forward, layers, history, rows, DECODE_STEPS) for rows in (1, batch))
        figures[name] = FormatFigures(alone, batched, prefill_rate(forward, layers, text))
        if isinstance(forward, LlamaForward):  # measured while at it: later starts take it from here
            figures[name].attention = forward.attention.to_dict()
        if name != "float32":
            f = figures[name]
            f.agreement, f.perplexity_ratio = quality(model, variant, ids)
            f.within_tolerance = f.agreement >= MIN_AGREEMENT and f.perplexity_ratio <= MAX_PERPLEXITY_RATIO
        del variant, forward
    cpu, _flags = cpu_description()
    return Calibration(
        choice=choose(figures),
        batch=batch,
        cpu=cpu,
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        figures=figures,
        seconds=round(time.perf_counter() - started, 2),
    )


def choose(figures: dict[str, FormatFigures]) -> str:
    """The format whose worst ratio to the best (alone, at a full batch, reading a prompt) is highest;
    float32 on ties."""
    usable = {name: f for name, f in figures.items() if f.within_tolerance}

    def rates(f: FormatFigures) -> tuple[float, float, float]:
        return f.single_tokens_per_second, f.batch_tokens_per_second, f.prefill_tokens_per_second

    best = [max(column) or 1.0 for column in zip(*map(rates, usable.values()), strict=True)]

    def score(name: str) -> tuple[float, bool]:
        worst = min(rate / top for rate, top in zip(rates(usable[name]), best, strict=True))
        return round(worst, 2), name == "float32"

    return max(usable, key=score)


def cached_calibration(weights: Path, *, cache_dir: Path, batch: int) -> Calibration | None:
    """The calibration stored for this machine and these weights, if any (None when unreadable)."""
    key = calibration_key(weights, batch=batch, threads=torch.get_num_threads())
    path = cache_dir / "formats" / f"{key}.json"
    if not path.is_file():
        return None
    try:
        return Calibration.from_json(path.read_text())
    except (ValueError, TypeError, KeyError):
        log.warning("ignoring an unreadable format calibration at %s", path)
        return None


def load_or_calibrate(
    model: Any, tokenizer: Any, *, weights: Path, cache_dir: Path, batch: int
) -> Calibration:
    """The cached calibration for this machine and these weights, or a fresh one (then cached)."""
    cached = cached_calibration(weights, cache_dir=cache_dir, batch=batch)
    if cached is not None:
        return cached
    key = calibration_key(weights, batch=batch, threads=torch.get_num_threads())
    path = cache_dir / "formats" / f"{key}.json"
    log.info("measuring which numeric format runs fastest on this CPU (once; ~30 s on 2 idle cores)")
    result = calibrate(model, tokenizer, batch=batch)
    _give_back_memory()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(result.to_json())
    partial.replace(path)
    return result


def _give_back_memory() -> None:
    """Return the measured formats' copies of the model to the OS: freed, glibc would keep the pages."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)
