"""Read a knowledge-base folder and split it into passages small enough to put into a prompt.

A passage is one heading's section of a Markdown document (or a run of its paragraphs, when the section
is long), or one question/answer pair of `faq.yaml` / `faq.csv`. Each passage keeps the document title,
because answers cite it ("Source: Returns and refunds"). Problems with the files are reported as
KnowledgeBaseError naming the file and, where there is one, the line: the admin has to fix the file.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bot.core.errors import ConfigError
from bot.knowledge.base import Passage

__all__ = [
    "DOCUMENT_SUFFIXES",
    "KnowledgeBaseError",
    "SourceFile",
    "fingerprint",
    "load_passages",
    "read_folder",
    "sentences",
    "split_faq",
    "split_markdown",
]

DOCUMENT_SUFFIXES = (".md", ".markdown", ".txt")
FAQ_NAMES = ("faq.yaml", "faq.yml", "faq.csv")
FAQ_TITLE = "FAQ"

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_EMPHASIS = re.compile(r"(\*\*|__|`)")
# A sentence ends at . ! ? followed by a space and a capital, digit or quote; "e.g. this" stays whole.
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[\"'(A-Z0-9€$£])")


class KnowledgeBaseError(ConfigError):
    """The knowledge base (KB_PATH) cannot be read: the message names the file and what is wrong."""


@dataclass(frozen=True, slots=True)
class SourceFile:
    relative: str
    text: str


def read_folder(root: Path) -> list[SourceFile]:
    """Every document and FAQ file under `root` (hidden files skipped), in a stable order."""
    if not root.exists():
        raise KnowledgeBaseError(f"KB_PATH={root}: no such folder")
    if not root.is_dir():
        raise KnowledgeBaseError(f"KB_PATH={root}: is a file; point it to a folder of .md/.txt files")
    files: list[SourceFile] = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if any(part.startswith(".") for part in path.relative_to(root).parts) or not path.is_file():
            continue
        if path.suffix.lower() not in DOCUMENT_SUFFIXES and path.name.lower() not in FAQ_NAMES:
            continue
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise KnowledgeBaseError(f"cannot read {relative} in KB_PATH: {exc.strerror or exc}") from exc
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise KnowledgeBaseError(
                f"{relative} in KB_PATH is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                f"{exc.start}); save it as UTF-8"
            ) from None
        files.append(SourceFile(relative, text.replace("\r\n", "\n")))
    if not files:
        raise KnowledgeBaseError(
            f"KB_PATH={root}: no documents in it (expected .md or .txt files, faq.yaml or faq.csv)"
        )
    return files


def fingerprint(files: Iterable[SourceFile]) -> str:
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.relative.encode() + b"\0" + file.text.encode() + b"\0")
    return digest.hexdigest()


def load_passages(files: Iterable[SourceFile], *, max_chars: int) -> list[Passage]:
    passages: list[Passage] = []
    for file in files:
        if Path(file.relative).name.lower() in FAQ_NAMES:
            passages += split_faq(file)
        else:
            passages += split_markdown(file, max_chars=max_chars)
    return passages


def split_markdown(file: SourceFile, *, max_chars: int) -> list[Passage]:
    """Sections by heading; a long section becomes several passages of whole paragraphs."""
    title = _default_title(file.relative)
    sections: list[tuple[str, list[str]]] = [("", [])]
    for line in file.text.split("\n"):
        heading = _HEADING.match(line)
        if heading and len(heading.group(1)) == 1 and not any(p for _, ps in sections for p in ps):
            title = _plain(heading.group(2))
        elif heading:
            sections.append((_plain(heading.group(2)), []))
        else:
            sections[-1][1].append(line)
    passages = []
    for section, lines in sections:
        paragraphs = [_plain(p) for p in re.split(r"\n\s*\n", "\n".join(lines)) if p.strip()]
        for chunk in _pack(paragraphs, max_chars):
            passages.append(Passage(title, section, chunk, file.relative))
    return passages


def split_faq(file: SourceFile) -> list[Passage]:
    """One passage per question; the question is its section, so it counts for retrieval."""
    pairs = _csv_pairs(file) if file.relative.lower().endswith(".csv") else _yaml_pairs(file)
    return [Passage(FAQ_TITLE, question, answer, file.relative) for question, answer in pairs]


def sentences(text: str) -> list[str]:
    """Sentences and list items of a passage, for extractive answers."""
    found: list[str] = []
    for line in text.split("\n"):
        line = line.strip().lstrip("-*• ").strip()
        found += [s.strip() for s in _SENTENCE.split(line) if s.strip()]
    return found


def _yaml_pairs(file: SourceFile) -> Iterator[tuple[str, str]]:
    try:
        data: Any = yaml.safe_load(file.text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise KnowledgeBaseError(f"{file.relative}{where} in KB_PATH is not valid YAML: {problem}") from None
    if isinstance(data, dict) and isinstance(data.get("faq"), list):
        data = data["faq"]
    if not isinstance(data, list):
        raise KnowledgeBaseError(
            f"{file.relative} in KB_PATH: expected a list of entries with 'question' and 'answer', "
            f"found {type(data).__name__}"
        )
    for number, entry in enumerate(data, 1):
        if not isinstance(entry, dict):
            raise KnowledgeBaseError(f"{file.relative} entry {number}: expected 'question:' and 'answer:'")
        yield _pair(file.relative, f"entry {number}", entry)


def _csv_pairs(file: SourceFile) -> Iterator[tuple[str, str]]:
    reader = csv.DictReader(io.StringIO(file.text))
    columns = {name.strip().lower(): name for name in reader.fieldnames or []}
    if "question" not in columns or "answer" not in columns:
        raise KnowledgeBaseError(
            f"{file.relative} in KB_PATH: the first row must name the columns 'question' and 'answer' "
            f"(found: {', '.join(reader.fieldnames or []) or 'nothing'})"
        )
    for row in reader:
        entry = {key: row.get(name) for key, name in columns.items()}
        yield _pair(file.relative, f"line {reader.line_num}", entry)


def _pair(relative: str, where: str, entry: dict[Any, Any]) -> tuple[str, str]:
    values = []
    for key in ("question", "answer"):
        value = entry.get(key)
        if not isinstance(value, str | int | float) or not str(value).strip():
            raise KnowledgeBaseError(f"{relative} {where}: '{key}' is missing or empty")
        values.append(" ".join(str(value).split()))
    return values[0], values[1]


def _pack(paragraphs: list[str], max_chars: int) -> Iterator[str]:
    """Whole paragraphs joined up to `max_chars`; a longer paragraph is cut at sentence ends."""
    current: list[str] = []
    for paragraph in paragraphs:
        pieces = [paragraph] if len(paragraph) <= max_chars else _cut(paragraph, max_chars)
        for piece in pieces:
            if current and len("\n\n".join([*current, piece])) > max_chars:
                yield "\n\n".join(current)
                current = []
            current.append(piece)
    if current:
        yield "\n\n".join(current)


def _cut(paragraph: str, max_chars: int) -> Iterator[str]:
    current = ""
    for sentence in _SENTENCE.split(paragraph):
        if current and len(current) + 1 + len(sentence) > max_chars:
            yield current
            current = ""
        current = f"{current} {sentence}".strip()
    if current:
        yield current


def _plain(text: str) -> str:
    """Markdown emphasis and link syntax removed; a link keeps its address, which answers may cite."""
    text = _LINK.sub(lambda m: m[1] if m[1] == m[2] else f"{m[1]} ({m[2]})", text)
    return _EMPHASIS.sub("", text).strip()


def _default_title(relative: str) -> str:
    stem = Path(relative).stem.replace("_", " ").replace("-", " ").strip()
    return stem[:1].upper() + stem[1:] if stem else relative
