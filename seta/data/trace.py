"""Read and write task streams in the TRACE layout.

Layout: `<data_dir>/<task>/{train,eval,test}.json`, each file a JSON list of
`{"prompt": str, "answer": str}` objects (extra keys are ignored; a key twice in one object is an
error). Files are UTF-8, with or without a byte-order mark.

A task folder without `eval.json` is accepted: its eval split is left **empty**
(nothing is carved out of train, so train stays exactly what the files say).
`train.json` and `test.json` are required.

Every file of every requested task is read and checked before anything is returned, so a
bad file raises (naming the file and the JSON position or list index) and nothing is
half-loaded.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from pathlib import Path

from seta.data.types import METRIC_KEYS, SPLITS, TRACE_METRICS, Example, Stream, Task, resolve_order


def _no_duplicates(pairs: list, path: Path) -> dict:
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"{path}: an object has the key {key!r} twice (JSON keeps only the last); "
                             "remove one of them")
        seen[key] = value
    return seen


def read_examples(path: str | Path) -> list[Example]:
    """Parse one TRACE split file; ValueError / FileNotFoundError name the file and the place."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found (each task folder needs train.json and test.json)")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a leading UTF-8 BOM is accepted
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not valid UTF-8 at byte {e.start}; save the file as UTF-8") from None
    try:
        data = json.loads(text, object_pairs_hook=lambda pairs: _no_duplicates(pairs, path))
    except json.JSONDecodeError as e:
        raise ValueError(
            f"{path}: malformed JSON at line {e.lineno}, column {e.colno} (char {e.pos}): {e.msg}"
        ) from None
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of {{prompt, answer}} objects, got {type(data).__name__}")
    examples = []
    for i, item in enumerate(data):
        where = f"{path}: item [{i}]"
        if not isinstance(item, dict):
            raise ValueError(f"{where} must be an object with 'prompt' and 'answer', got {type(item).__name__}")
        for key in ("prompt", "answer"):
            if key not in item:
                raise ValueError(f"{where} has no {key!r} field (fields present: {sorted(item)})")
            if not isinstance(item[key], str):
                raise ValueError(f"{where}: {key!r} must be a string, got {type(item[key]).__name__}")
            if not item[key].strip():
                raise ValueError(f"{where}: {key!r} is empty; remove the item or fill it in")
        examples.append(Example(item["prompt"], item["answer"]))
    return examples


def _subsample(examples: list[Example], limit: int | None, rng: random.Random) -> list[Example]:
    """At most `limit` examples, drawn without replacement, kept in file order."""
    if limit is None or limit >= len(examples):
        return examples
    keep = sorted(rng.sample(range(len(examples)), limit))
    return [examples[i] for i in keep]


def load_trace(
    data_dir: str | Path,
    order: int | str | Sequence[str] = 1,
    max_train: int | None = None,
    max_eval: int | None = None,
    max_test: int | None = None,
    seed: int = 0,
    metrics: Mapping[str, str] | None = None,
) -> Stream:
    """Load a stream from a TRACE-layout directory.

    order: 1 / 2 (TRACE orders) or a list of task folder names.
    max_*: keep at most that many examples of a split, a seeded random subset in file order
        (the subset of a split depends only on seed, task and split).
    metrics: metric keys for task folders outside TRACE's eight (these extend the known names).
    """
    known = dict(TRACE_METRICS)
    for name, metric in (metrics or {}).items():
        if metric not in METRIC_KEYS:
            raise ValueError(f"metric {metric!r} for task {name!r} is not one of {METRIC_KEYS}")
        known[name] = metric
    for arg, value in (("max_train", max_train), ("max_eval", max_eval), ("max_test", max_test)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{arg} must be None or a positive int, got {value!r}")
    names = resolve_order(order, known=known)
    root = Path(data_dir)
    if root.is_file():
        raise ValueError(f"{root} is a file, not a directory: give the TRACE data directory (one folder per task)")
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: TRACE data directory not found (expected one folder per task)")
    missing = [n for n in names if not (root / n).is_dir()]
    if missing:
        present = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise FileNotFoundError(f"{root}: no task folder(s) {missing}; folders present: {present}")

    limits = {"train": max_train, "eval": max_eval, "test": max_test}
    tasks = []
    for name in names:
        splits = {}
        for split in SPLITS:
            path = root / name / f"{split}.json"
            if split == "eval" and not path.exists():
                splits[split] = []  # documented: a missing eval.json gives an empty eval split
                continue
            rng = random.Random(f"{seed}/{name}/{split}")
            examples = read_examples(path)
            if not examples and split != "eval":
                raise ValueError(f"{path}: the {split} split is an empty list; a task needs {split} examples")
            splits[split] = _subsample(examples, limits[split], rng)
        tasks.append(Task(name, known[name], splits["train"], splits["eval"], splits["test"]))
    return Stream(tasks, name=f"trace:{root}")


def write_trace(stream: Stream, data_dir: str | Path) -> Path:
    """Write `stream` in the TRACE layout (one folder per task, three JSON lists); returns the dir.

    An empty eval split is still written (as `[]`), so the folder is complete.
    """
    root = Path(data_dir)
    for task in stream:
        folder = root / task.name
        folder.mkdir(parents=True, exist_ok=True)
        for split in SPLITS:
            rows = [ex.to_dict() for ex in task.split(split)]
            text = json.dumps(rows, ensure_ascii=False, indent=1)
            (folder / f"{split}.json").write_text(text + "\n", encoding="utf-8")
    return root
