"""Tiny real models built on the spot: a trained byte-level BPE tokenizer and random-weight decoders.

They load through the same code as any model directory, so tests exercise real tokenisation, chat
templates, `generate`, detokenisation and streaming in milliseconds instead of seconds.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

__all__ = ["CHATML_TEMPLATE", "build_tiny_gpt2", "build_tiny_llama"]

CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_CORPUS = [
    "Hello! How can I help you with your order today?",
    "My name is Anna and I would like to return a pair of shoes.",
    "Your refund will arrive within five business days.",
    "Please send us your order number so we can check the delivery status.",
    "Привет! Чем могу помочь? 你好，我可以帮你吗？ مرحبا كيف يمكنني مساعدتك",
    "Thanks a lot 👍🏽 see you soon 👩‍👩‍👧 café naïve",
    "User: Assistant: System: The capital of France is Paris.",
] * 20


def _tokenizer(with_template: bool) -> PreTrainedTokenizerFast:
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    core.train_from_iterator(_CORPUS, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<|im_start|>" if with_template else "<|endoftext|>",
        eos_token="<|im_end|>" if with_template else "<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    if with_template:
        tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def build_tiny_llama(path: Path, *, context: int = 512, endless: bool = False, width: int = 64) -> Path:
    """A 2-layer Llama with a ChatML template (the shape of SmolLM2), saved as a model directory.

    `endless`: its generation config names no end-of-sequence token, so replies run to max_new_tokens.
    `width`: the hidden size (the MLP's is twice that); wide enough, torch splits its products across
    threads.
    """
    tokenizer = _tokenizer(with_template=True)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        initializer_range=0.5,  # large random weights: varied text, not one repeated token
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    if endless:
        model.generation_config.eos_token_id = None
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_tiny_gpt2(path: Path) -> Path:
    """A 2-layer GPT-2 without a chat template: prompted with a plain transcript and stop strings."""
    tokenizer = _tokenizer(with_template=False)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=64,
        n_layer=2,
        n_head=4,
        n_positions=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        initializer_range=0.5,
    )
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
