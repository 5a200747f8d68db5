"""Calibration and training data: read text files, tokenize them for a task, batch them.

Formats (by file extension): `.txt` one passage per line; `.jsonl` one object per line with
`text` (and optionally `text_pair`, `label`, `tokens`/`tags`); `.csv` with a `text` (or `sentence`)
column and optionally `text_pair`, `label`; `.json` in SQuAD format (question + context pairs,
answers for QA training). Without a file, the English corpus shipped in `exporter/data/` is used
(passages written for this project).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from .errors import UsageError
from .tasks import Task

FORMATS = (".txt", ".jsonl", ".csv", ".json")


@dataclass
class Sample:
    """One example: text, an optional second segment, and an optional label of the task's kind
    (class index, per-word tags, or the character span of a QA answer in `pair`)."""

    text: str
    pair: str | None = None
    label: Any = None
    words: list[str] | None = None
    answer_start: int | None = None
    answer_text: str | None = None
    extra: dict = field(default_factory=dict)


def builtin_corpus() -> list[Sample]:
    text = resources.files("exporter").joinpath("data/corpus.txt").read_text(encoding="utf-8")
    return [Sample(line.strip()) for line in text.splitlines() if line.strip()]


def read_samples(path: str | Path | None) -> list[Sample]:
    """Read samples from a file (format by extension), or the built-in corpus when path is None."""
    if path is None:
        return builtin_corpus()
    path = Path(path)
    if not path.exists():
        raise UsageError(f"data file {path} does not exist")
    if path.is_dir():
        raise UsageError(f"data file {path} is a directory; pass a {'/'.join(FORMATS)} file")
    if path.suffix not in FORMATS:
        raise UsageError(f"data file {path}: unknown format {path.suffix!r}; use one of {', '.join(FORMATS)}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"data file {path} is not readable UTF-8 text ({exc.__class__.__name__}: {exc})") from None
    try:
        samples = _PARSERS[path.suffix](text)
    except (ValueError, KeyError, TypeError, csv.Error) as exc:
        raise UsageError(f"data file {path} is not valid {path.suffix[1:].upper()} ({exc})") from None
    if not samples:
        raise UsageError(f"data file {path} holds no samples; it needs at least one passage")
    return samples


def _parse_txt(text: str) -> list[Sample]:
    return [Sample(line.strip()) for line in text.splitlines() if line.strip()]


def _from_record(record: dict) -> Sample:
    if "tokens" in record:
        words = [str(w) for w in record["tokens"]]
        return Sample(" ".join(words), words=words, label=record.get("tags", record.get("labels")))
    text = record.get("text", record.get("sentence", record.get("question")))
    if not isinstance(text, str):
        raise ValueError(f"a record has no 'text' field: {sorted(record)}")
    pair = record.get("text_pair", record.get("context"))
    extra = {"choices": [str(c) for c in record["choices"]]} if "choices" in record else {}
    return Sample(text, pair, record.get("label"), extra=extra)


def _parse_jsonl(text: str) -> list[Sample]:
    samples = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                samples.append(_from_record(json.loads(line)))
            except ValueError as exc:
                raise ValueError(f"line {number}: {exc}") from None
    return samples


def _parse_csv(text: str) -> list[Sample]:
    rows = list(csv.DictReader(text.splitlines()))
    return [_from_record({k: v for k, v in row.items() if v not in (None, "")}) for row in rows]


def _parse_squad(text: str) -> list[Sample]:
    data = json.loads(text)
    if not isinstance(data, dict) or "data" not in data:
        raise ValueError("expected SQuAD format: {'data': [{'paragraphs': [{'context', 'qas'}]}]}")
    samples = []
    for article in data["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                answers = qa.get("answers") or [{}]
                samples.append(
                    Sample(
                        qa["question"],
                        paragraph["context"],
                        answer_start=answers[0].get("answer_start"),
                        answer_text=answers[0].get("text"),
                        extra={"id": qa.get("id")},
                    )
                )
    return samples


_PARSERS = {".txt": _parse_txt, ".jsonl": _parse_jsonl, ".csv": _parse_csv, ".json": _parse_squad}


def _split_pair(sample: Sample) -> tuple[str, str]:
    """A plain passage as a pair: its first sentence (question / sentence A) and the whole passage."""
    if sample.pair is not None:
        return sample.text, sample.pair
    first = sample.text.split(". ")[0].rstrip(".") + "?"
    return first, sample.text


def encode(samples: list[Sample], tokenizer, task: Task, seq_len: int) -> dict[str, torch.Tensor]:
    """Tokenize for `task`: pairs where the task reads two segments, (n, choices, seq) for
    multiple choice (each first segment with its own and the next sample's second segment).
    Padded to the longest sample, truncated to seq_len."""
    kwargs = dict(padding=True, truncation=True, max_length=seq_len, return_tensors="pt")
    if task.choices:
        pairs = [_split_pair(s) for s in samples]
        firsts = [p[0] for p in pairs for _ in range(2)]
        seconds = [c for i, p in enumerate(pairs) for c in (p[1], pairs[(i + 1) % len(pairs)][1])]
        flat = tokenizer(firsts, seconds, **kwargs)
        return {k: v.view(len(samples), 2, -1) for k, v in flat.items() if k in INPUTS}
    if task.pair:
        firsts, seconds = zip(*(_split_pair(s) for s in samples))
        encoded = tokenizer(list(firsts), list(seconds), **kwargs)
    else:
        encoded = tokenizer([s.text for s in samples], **kwargs)
    return {k: v for k, v in encoded.items() if k in INPUTS}


INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def batches(encoded: dict[str, torch.Tensor], batch_size: int) -> list[dict[str, torch.Tensor]]:
    """Split an encoded set into batches, each trimmed to its own longest sequence."""
    total = len(encoded["input_ids"])
    out = []
    for start in range(0, total, batch_size):
        batch = {k: v[start : start + batch_size] for k, v in encoded.items()}
        length = int(batch["attention_mask"].flatten(0, -2).sum(-1).max())
        out.append({k: v[..., :length].contiguous() for k, v in batch.items()})
    return out


def select(samples: list[Sample], count: int, what: str, warn) -> list[Sample]:
    """The first `count` samples; with fewer available, warn and use all of them."""
    if count < 1:
        raise UsageError(f"{what}: the sample count must be at least 1, got {count}")
    if len(samples) < count:
        warn(f"{what}: asked for {count} samples but the data holds {len(samples)}; using all {len(samples)}")
    return samples[:count]
