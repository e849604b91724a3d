"""Attention for the engine's own forward pass (attention.py): what each new token sees, and the precision
measured on this CPU."""

from __future__ import annotations

import logging

import pytest
import torch
from torch.nn import functional

from bot.llm.local.attention import Attention, allowed, faster_precision


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


def test_a_float32_model_attends_in_float32_without_measuring(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="bot.llm.local.attention"):
        assert faster_precision(torch.float32, 9, 3, 64) == torch.float32
    assert not caplog.records


def test_a_bfloat16_model_attends_in_the_precision_measured_faster(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="bot.llm.local.attention"):
        chosen = faster_precision(torch.bfloat16, 9, 3, 64)
    assert chosen in (torch.bfloat16, torch.float32)
    (record,) = caplog.records
    message = record.getMessage()
    assert message.startswith(f"attention in {str(chosen).removeprefix('torch.')} (measured here: bfloat16 ")
    assert "float32" in message and " us" in message
