"""MODEL_*, ENGINE_*, GENERATION_*, SYSTEM_PROMPT*, LLM_*, SERVE_*: which model answers, and how."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from bot.config.base import Section
from bot.core.domain import GenerationParams
from bot.core.errors import ConfigError

__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "EngineSettings",
    "GenerationSettings",
    "LlmSettings",
    "ModelSettings",
    "PromptSettings",
    "ServeSettings",
]

DEFAULT_SYSTEM_PROMPT = (
    "You are a friendly customer-support assistant. Answer every question directly in two or three short "
    "sentences with practical steps. When the customer asks you to write a message, e-mail, note or list, "
    "write it yourself. Use what the customer told you earlier, such as their name or order number. Never "
    "invent order numbers, prices or contact details."
)


class ModelSettings(Section):
    model_config = SettingsConfigDict(env_prefix="MODEL_", protected_namespaces=())

    name: str = Field(
        "bundled:smollm2-135m-instruct",
        min_length=1,
        description="bundled:smollm2-135m-instruct, a local model directory, a .gguf file or a Hub model id",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16", "int8", "int4", "int4-float32"] = Field(
        "auto",
        description="auto: on CPU the fastest format that keeps float32's quality, measured once and cached "
        "(int8 = dynamic quantisation of the linear layers; int4 = bfloat16 with 4-bit weights for the "
        "few rows of a decode step; int4-float32 = the same with float32 activations, for CPUs without "
        "bfloat16 arithmetic); bfloat16 (or float16) on CUDA",
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where the model runs")
    cache_dir: Path | None = Field(
        None, description="Where converted models are cached (default: the user cache directory)"
    )
    threads: Annotated[int, Field(ge=1)] | None = Field(
        None,
        description="Most torch CPU threads a forward pass may use (default: the number of cores); "
        "each pass uses the count measured fastest at the time, up to this",
    )
    max_context: Annotated[int, Field(ge=64)] | None = Field(
        None, description="Context window in tokens (default: the model's own maximum)"
    )


class EngineSettings(Section):
    model_config = SettingsConfigDict(env_prefix="ENGINE_")

    max_queue: int = Field(
        64, ge=1, description="Replies that may wait for the model; beyond that people are asked to retry"
    )
    max_batch: int = Field(
        16, ge=1, le=256, description="Replies decoded together (continuous batching across chats)"
    )
    cache_max_mb: int = Field(
        512,
        ge=0,
        description="Memory for recent chats' KV caches: a next turn computes only its new tokens (0: off)",
    )
    min_new_tokens: int = Field(
        64,
        ge=1,
        description="When replies queue behind a full batch, new ones get shorter budgets, never below this",
    )
    lean_forward: bool = Field(
        True,
        description="Run Llama-family models (the bundled one among them) through the engine's own forward "
        "pass, prompts and decode steps, which skips transformers' per-layer overhead; false: transformers' "
        "forward for every pass",
    )


class PromptSettings(Section):
    model_config = SettingsConfigDict(env_prefix="")

    system_prompt: str = Field(DEFAULT_SYSTEM_PROMPT, description="Instructions given to the model first")
    system_prompt_file: Path | None = Field(
        None, description="Read the system prompt from this UTF-8 file instead (wins over SYSTEM_PROMPT)"
    )
    few_shot: bool = Field(
        True, description="Show the model two short worked examples before each chat (helps small models)"
    )

    @field_validator("system_prompt_file")
    @classmethod
    def _readable_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"file {str(value)!r} does not exist or is not a file")
        return value

    def resolve(self) -> str:
        """The effective system prompt (reads SYSTEM_PROMPT_FILE when it is set)."""
        if self.system_prompt_file is None:
            return self.system_prompt
        try:
            return self.system_prompt_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"SYSTEM_PROMPT_FILE: cannot read {str(self.system_prompt_file)!r}: {exc}"
            ) from exc


class GenerationSettings(Section):
    model_config = SettingsConfigDict(env_prefix="GENERATION_")

    temperature: float = Field(0.2, ge=0.0, le=5.0, description="Sampling temperature (0 = greedy)")
    top_p: float = Field(0.9, gt=0.0, le=1.0, description="Nucleus sampling: keep tokens within this mass")
    top_k: int = Field(50, ge=0, description="Keep only the k most likely tokens (0 = off)")
    repetition_penalty: float = Field(
        1.1,
        gt=0.0,
        le=10.0,
        description="> 1 discourages a reply from repeating its own tokens (not the prompt's; 1 = off)",
    )
    no_repeat_ngram: int = Field(
        4, ge=0, le=32, description="No phrase of this many tokens appears twice within one reply (0 = off)"
    )
    avoid_ngram: int = Field(
        6,
        ge=0,
        le=32,
        description="No phrase of this many tokens is copied from the chat's earlier replies (local models; "
        "0 = off)",
    )
    max_new_tokens: int = Field(256, ge=1, le=8192, description="Longest reply, in tokens")
    do_sample: bool = Field(True, description="false = greedy decoding (deterministic)")
    seed: int | None = Field(None, ge=0, description="Fix the sampling seed for reproducible replies")
    timeout_seconds: float = Field(
        300.0, gt=0, description="Longest total time for one reply once the model starts on it"
    )
    stall_seconds: float = Field(
        30.0, gt=0, description="Give up on a reply when the model produced no token for this long (a hang)"
    )
    num_candidates: int = Field(
        1, ge=1, le=16, description="Sample this many replies in one batch and send the best safe one"
    )
    rank_embeddings: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Rank best-of-n candidates by MiniLM similarity to the question (the process's one "
        "all-MiniLM-L6-v2, shared with KB_EMBEDDINGS); auto: when installed and "
        "GENERATION_NUM_CANDIDATES > 1; off: by word overlap",
    )

    def params(self) -> GenerationParams:
        return GenerationParams(
            max_new_tokens=self.max_new_tokens,
            do_sample=self.do_sample and self.temperature > 0,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            repetition_penalty=self.repetition_penalty,
            no_repeat_ngram=self.no_repeat_ngram,
            avoid_ngram=self.avoid_ngram,
            seed=self.seed,
            timeout_seconds=self.timeout_seconds,
            stall_seconds=self.stall_seconds,
            num_candidates=self.num_candidates,
        )


class LlmSettings(Section):
    """Where replies are generated: in this process, or on an OpenAI-compatible model server."""

    model_config = SettingsConfigDict(env_prefix="LLM_", protected_namespaces=())
    secret_fields = frozenset({"api_key"})

    backend: Literal["local", "openai"] = Field(
        "local", description="local: load MODEL_NAME here; openai: call an OpenAI-compatible server"
    )
    base_url: str | None = Field(
        None, description="The server's API root, e.g. http://127.0.0.1:8000/v1 (needed by openai)"
    )
    api_key: SecretStr | None = Field(None, description="Bearer token sent to the model server")
    model: str | None = Field(None, description="Model name sent to the server (default: MODEL_NAME)")
    timeout_seconds: float = Field(
        30.0, gt=0, le=600, description="Connect timeout, and longest wait for the server's next bytes"
    )
    max_retries: int = Field(
        3, ge=0, le=10, description="Retries on connection errors and 429/502/503/504, before any text"
    )

    @field_validator("base_url")
    @classmethod
    def _api_url(cls, value: str | None) -> str | None:
        if value is not None and (
            urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).netloc
        ):
            raise ValueError("must be an http(s) URL such as http://127.0.0.1:8000/v1")
        return value

    @model_validator(mode="after")
    def _openai_needs_url(self) -> LlmSettings:
        if self.backend == "openai" and not self.base_url:
            raise ValueError(
                "LLM_BASE_URL: required when LLM_BACKEND=openai (for example http://127.0.0.1:8000/v1)"
            )
        return self


class ServeSettings(Section):
    """`bot serve-model`: the OpenAI-compatible server over the local model."""

    model_config = SettingsConfigDict(env_prefix="SERVE_")
    secret_fields = frozenset({"api_key"})

    host: str = Field("127.0.0.1", description="Address `bot serve-model` listens on (0.0.0.0: all)")
    port: int = Field(8000, ge=1, le=65535, description="Port `bot serve-model` listens on")
    api_key: SecretStr | None = Field(
        None, description="When set, requests need `Authorization: Bearer <key>` (401 otherwise)"
    )
