"""Attention for the engine's own forward pass (attention.py): what each new token sees, and how it runs
fastest on this CPU (measured)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import torch
from torch.nn import functional

from bot.llm.local import attention as attention_module
from bot.llm.local.attention import Attention, allowed, measured


def test_one_new_token_per_row_without_padding_sees_everything_and_needs_no_mask() -> None:
    assert allowed(torch.ones(3, 7, dtype=torch.long), 1) is None


def test_a_prompt_alone_is_plain_causal_attention() -> None:
    assert allowed(torch.ones(1, 5, dtype=torch.long), 5) is None


def test_new_tokens_after_a_cached_prefix_see_the_prefix_and_the_new_tokens_before_them() -> None:
    seen = allowed(torch.ones(1, 5, dtype=torch.long), 3)
    assert seen is not None and seen.shape == (1, 1, 3, 5)
    assert seen[0, 0].tolist() == [
        [True, True, True, False, False],
        [True, True, True, True, False],
        [True, True, True, True, True],
    ]


def test_padding_is_never_seen() -> None:
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    seen = allowed(mask, 1)
    assert seen is not None
    assert seen[:, 0, 0].tolist() == [[False, False, True, True], [True, True, True, True]]


@pytest.mark.parametrize("precision", [torch.float32, torch.bfloat16])
def test_attention_in_either_precision_matches_repeated_key_heads(precision: torch.dtype) -> None:
    q = torch.randn(2, 6, 4, 16, dtype=torch.bfloat16)
    k, v = (torch.randn(2, 2, 9, 16, dtype=torch.bfloat16) for _ in range(2))
    seen = allowed(torch.ones(2, 9, dtype=torch.long), 4)
    expected = functional.scaled_dot_product_attention(
        q.float(), k.float().repeat_interleave(3, 1), v.float().repeat_interleave(3, 1), attn_mask=seen
    )
    out = Attention(precision)(q, k, v, seen)
    assert out.dtype == torch.bfloat16 and out.shape == expected.shape
    assert torch.allclose(out.float(), expected, atol=0.05)


def _expected(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, seen: torch.Tensor | None) -> torch.Tensor:
    group = q.shape[1] // k.shape[1]
    return functional.scaled_dot_product_attention(
        q.float(),
        k.float().repeat_interleave(group, 1),
        v.float().repeat_interleave(group, 1),
        attn_mask=seen,
        is_causal=seen is None and q.shape[2] > 1,
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "mask",
    [
        torch.ones(1, 12, dtype=torch.long),  # a prompt after 7 cached tokens
        torch.ones(1, 5, dtype=torch.long),  # a prompt alone: plain causal, no mask
        torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1], [1] * 12]),  # prompts of two rows, one padded
    ],
    ids=["after-a-prefix", "alone", "padded"],
)
def test_prompts_written_out_match_the_kernel(dtype: torch.dtype, mask: torch.Tensor) -> None:
    rows, columns = mask.shape
    q = torch.randn(rows, 6, 5, 16, dtype=dtype)
    k, v = (torch.randn(rows, 2, columns, 16, dtype=dtype) for _ in range(2))
    seen = allowed(mask, 5)
    out = Attention(torch.float32, prompts=[(0, "written")])(q, k, v, seen)
    assert out.dtype == dtype
    tolerance = 1e-5 if dtype == torch.float32 else 0.05
    assert torch.allclose(out.float(), _expected(q, k, v, seen), atol=tolerance)


@pytest.mark.parametrize("way", ["folded", "written"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_decode_steps_folded_or_written_out_match_the_kernel_over_a_cache_view(
    dtype: torch.dtype, way: str
) -> None:
    """One new token per row, keys a view of a longer buffer (as the cache hands them out), one row padded."""
    q = torch.randn(3, 6, 1, 16, dtype=dtype)
    k, v = (torch.randn(3, 2, 20, 16, dtype=dtype)[:, :, :11] for _ in range(2))
    mask = torch.ones(3, 11, dtype=torch.long)
    mask[1, :4] = 0
    for seen in (allowed(mask, 1), None):
        out = Attention(torch.float32, steps=[(0, way)])(q, k, v, seen)
        tolerance = 1e-5 if dtype == torch.float32 else 0.05
        assert out.dtype == dtype and torch.allclose(out.float(), _expected(q, k, v, seen), atol=tolerance)


def test_each_size_of_step_and_prompt_runs_the_way_chosen_for_it(monkeypatch: pytest.MonkeyPatch) -> None:
    shapes = (
        (1, 1, 20),
        (2, 1, 20),
        (4, 1, 20),
        (1, 4, 9),
        (1, 4, 10),
        (2, 4, 30),
    )  # (rows, new tokens, keys)
    cases = []
    for rows, new, columns in shapes:
        q = torch.randn(rows, 6, new, 16)
        k, v = (torch.randn(rows, 2, columns, 16) for _ in range(2))
        seen = allowed(torch.ones(rows, columns, dtype=torch.long), new)
        cases.append(((q, k, v, seen), _expected(q, k, v, seen)))
    kernel_calls = []
    kernel = functional.scaled_dot_product_attention

    def counted(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        kernel_calls.append((q.shape[0], q.shape[1], q.shape[2], k.shape[2], bool(kwargs.get("enable_gqa"))))
        return kernel(q, k, v, **kwargs)

    monkeypatch.setattr(functional, "scaled_dot_product_attention", counted)
    steps, prompts = [(0, "kernel"), (40, "folded"), (80, "written")], [(0, "kernel"), (40, "written")]
    attention = Attention(torch.float32, steps, prompts)
    for args, expected in cases:
        assert torch.allclose(attention(*args), expected, atol=1e-5)
    # 20 pairs: the kernel; 40: folded (the 6 query heads as 2 heads of 3 queries); 80: written out;
    # prompts of 36 pairs by the kernel, of 40 and 240 written out
    assert kernel_calls == [(1, 6, 1, 20, True), (2, 2, 3, 20, False), (1, 6, 4, 9, True)]
    assert str(attention) == (
        "kernel in float32; steps: kernel, folded from 40 query-key pairs, written from 80 query-key pairs; "
        "prompts: kernel, written from 40 query-key pairs"
    )
    assert str(Attention(torch.bfloat16)) == "kernel in bfloat16; steps: kernel; prompts: kernel"
    again = Attention.from_dict(json.loads(json.dumps(attention.to_dict())))  # as the calibration keeps it
    assert again.precision == torch.float32 and again.ways == attention.ways
    odd = {"precision": "bfloat16", "steps": [[0, "fast"]], "prompts": [[0, "folded"]]}  # not ours: ignored
    assert Attention.from_dict(odd).ways == Attention(torch.bfloat16).ways


def test_a_float32_model_attends_in_float32_and_measures_the_ways(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="bot.llm.local.attention"):
        chosen = measured(torch.float32, 9, 3, 64)
    assert chosen.precision == torch.float32
    for kind, shapes in ((False, attention_module._STEPS), (True, attention_module._PROMPTS)):
        starts = [start for start, _ in chosen.ways[kind]]
        assert starts[0] == 0 and set(starts[1:]) <= {rows * new * keys for rows, new, keys in shapes}
    (record,) = caplog.records
    message = record.getMessage()
    assert message.startswith(f"attention: {chosen} (measured here: float32 ")
    assert "bfloat16" not in message
    assert "steps 1x1x128: kernel " in message and " folded " in message
    assert "prompts 1x25x128: kernel " in message


def test_a_bfloat16_model_attends_as_measured_faster(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="bot.llm.local.attention"):
        chosen = measured(torch.bfloat16, 9, 3, 64)
    assert chosen.precision in (torch.bfloat16, torch.float32)
    (record,) = caplog.records
    message = record.getMessage()
    assert message.startswith(f"attention: {chosen} (measured here: bfloat16 ")
    assert "float32" in message and " us" in message


def test_another_way_is_chosen_only_where_it_clearly_beats_the_kernel() -> None:
    shapes = ((1, 1, 8), (1, 1, 64), (4, 1, 64))  # 8, 64 and 256 query-key pairs
    kernel = [1.0, 1.0, 1.0]
    chosen = attention_module._chosen
    assert chosen(shapes, {"kernel": kernel, "written": [2.0, 0.5, 0.5]}) == [(0, "kernel"), (64, "written")]
    assert chosen(shapes, {"kernel": kernel, "folded": [0.5, 0.95, 0.5], "written": [0.6, 2.0, 0.4]}) == [
        (0, "folded"),
        (64, "kernel"),
        (256, "written"),
    ]
    assert chosen(shapes, {"kernel": kernel, "written": [0.95, 0.95, 0.95]}) == [(0, "kernel")]
