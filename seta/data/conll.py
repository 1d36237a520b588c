"""CoNLL columns -> an extraction task: name the entities of a sentence, in order, with their types.

Input: the CoNLL-2003 text format, one token per line with whitespace-separated columns (token
first, the entity tag last: `O`, `B-TYPE` or `I-TYPE`, IOB1 or IOB2), sentences separated by blank
lines, `-DOCSTART-` lines ignored. A sentence with a malformed line (fewer than two columns, or a
last column that is not a tag) is skipped and counted; so is a sentence without an entity.

Each kept sentence becomes

    prompt: "Sentence: <tokens joined by spaces>\\nNamed entities:"
    answer: "<entity> (<TYPE>), <entity> (<TYPE>), ..."     e.g. "Japan (LOC), Asian Cup (MISC)"

An entity is a maximal run of tokens tagged with one type: it starts at `B-` or at an `I-` whose
type differs from the previous token's.
"""

from __future__ import annotations

import re

from seta.data.converters import Converted
from seta.data.types import Example

CUE = "\nNamed entities:"
_TAG = re.compile(r"^(O|[BI]-[A-Za-z]+)$")


def read_conll(text: str) -> tuple[list[list[tuple[str, str]]], Converted]:
    """Sentences as (token, tag) lists, and a `Converted` holding only the skip counts."""
    sentences, counts, current, bad = [], Converted(), [], False

    def close():
        nonlocal current, bad
        if current or bad:
            if bad:
                counts.skip("malformed line")
            else:
                sentences.append(current)
        current, bad = [], False

    for line in text.splitlines():
        cols = line.split()
        if not cols:
            close()
        elif cols[0] == "-DOCSTART-":
            close()
        elif len(cols) < 2 or not _TAG.match(cols[-1]):
            bad = True
        else:
            current.append((cols[0], cols[-1]))
    close()
    return sentences, counts


def entities(sentence: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(text, type) of each entity of a tagged sentence, in order."""
    found, words, kind = [], [], None
    for token, tag in sentence + [("", "O")]:
        prefix, _, label = tag.partition("-")
        if words and (tag == "O" or prefix == "B" or label != kind):
            found.append((" ".join(words), kind))
            words, kind = [], None
        if tag != "O":
            words.append(token)
            kind = label
    return found


def conll_extraction(text: str) -> Converted:
    """The extraction examples of a CoNLL text (see the module docstring)."""
    sentences, out = read_conll(text)
    for sentence in sentences:
        found = entities(sentence)
        if not found:
            out.skip("no entity")
            continue
        prompt = "Sentence: " + " ".join(t for t, _ in sentence) + CUE
        out.examples.append(Example(prompt, ", ".join(f"{w} ({k})" for w, k in found)))
    return out
