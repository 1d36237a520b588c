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

A directory may carry a manifest, `stream.json`:

    {"format": 1, "name": "bigbench-default",
     "tasks": [{"name": "qa_wikidata", "metric": "exact_match"}, ...], ...}

It names the tasks (any names, any number) in their default order with each task's metric
key; other keys (source, settings, counts) are kept for the record and ignored here. Without
a manifest the directory is a plain TRACE directory: TRACE's eight folder names and metrics.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from pathlib import Path

from seta.data.types import METRIC_KEYS, SPLITS, TRACE_METRICS, Example, Stream, Task, resolve_order

MANIFEST = "stream.json"  # file name of a stream directory's manifest
MANIFEST_FORMAT = 1


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


def _manifest_error(path: Path, what: str) -> ValueError:
    example = '{"format": 1, "tasks": [{"name": ..., "metric": ...}, ...]}'
    return ValueError(f"{path}: {what}; a manifest looks like {example}")


def read_manifest(data_dir: str | Path) -> dict | None:
    """The checked manifest of a stream directory (`stream.json`), or None when it has none.

    ValueError names the file and the problem: malformed JSON, no `tasks` list, a task without a
    name or with an unknown metric key, a repeated name, an unsupported format.
    """
    path = Path(data_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"), object_pairs_hook=lambda p: _no_duplicates(p, path))
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not valid UTF-8 at byte {e.start}; save the file as UTF-8") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), list) or not data["tasks"]:
        raise _manifest_error(path, "expected an object with a non-empty 'tasks' list")
    if data.get("format", MANIFEST_FORMAT) != MANIFEST_FORMAT:
        raise _manifest_error(path, f"format {data.get('format')!r} is not supported (this version reads {MANIFEST_FORMAT})")
    seen = set()
    for i, task in enumerate(data["tasks"]):
        if not isinstance(task, dict) or not isinstance(task.get("name"), str) or not task["name"].strip():
            raise _manifest_error(path, f"tasks[{i}] needs a non-empty string 'name'")
        if task.get("metric") not in METRIC_KEYS:
            raise _manifest_error(path, f"tasks[{i}] ({task['name']!r}): metric {task.get('metric')!r} is not one of {METRIC_KEYS}")
        if task["name"] in seen:
            raise _manifest_error(path, f"task {task['name']!r} is listed twice")
        seen.add(task["name"])
    return data


def write_manifest(stream: Stream, data_dir: str | Path, name: str | None = None, **extra) -> Path:
    """Write `stream.json` (task order and metrics of `stream`, plus `extra` keys) into `data_dir`."""
    data = {"format": MANIFEST_FORMAT, "name": name or stream.name,
            "tasks": [{"name": t.name, "metric": t.metric} for t in stream], **extra}
    path = Path(data_dir) / MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return path


def stream_task_names(data_dir: str | Path) -> list[str]:
    """Task names a directory offers: the manifest's tasks, else the TRACE folders present."""
    manifest = read_manifest(data_dir)
    if manifest is not None:
        return [t["name"] for t in manifest["tasks"]]
    return [n for n in TRACE_METRICS if (Path(data_dir) / n).is_dir()]


def load_trace(
    data_dir: str | Path,
    order: int | str | Sequence[str] | None = None,
    max_train: int | None = None,
    max_eval: int | None = None,
    max_test: int | None = None,
    seed: int = 0,
    metrics: Mapping[str, str] | None = None,
    tasks: Sequence[str] | None = None,
) -> Stream:
    """Load a stream from a TRACE-layout directory, with or without a `stream.json` manifest.

    order: 1 / 2 (TRACE orders) or a list of task folder names. Default: the manifest's order,
        or TRACE order 1 for a directory without a manifest.
    tasks: the task names to load, in this order (a subset of the directory's tasks); give
        either `order` or `tasks`, not both.
    max_*: keep at most that many examples of a split, a seeded random subset in file order
        (the subset of a split depends only on seed, task and split).
    metrics: metric keys for task folders outside TRACE's eight or the manifest (these extend,
        or override, the known names).
    """
    root = Path(data_dir)
    if root.is_file():
        raise ValueError(f"{root} is a file, not a directory: give the TRACE data directory (one folder per task)")
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: TRACE data directory not found (expected one folder per task)")
    if order is not None and tasks is not None:
        raise ValueError(f"give either order={order!r} or tasks={tasks!r}, not both")
    if tasks is not None and (isinstance(tasks, str) or not isinstance(tasks, Sequence)):
        raise ValueError(f"tasks must be a list of task names, got {tasks!r}")
    manifest = read_manifest(root)
    known = dict(TRACE_METRICS) if manifest is None else {t["name"]: t["metric"] for t in manifest["tasks"]}
    for name, metric in (metrics or {}).items():
        if metric not in METRIC_KEYS:
            raise ValueError(f"metric {metric!r} for task {name!r} is not one of {METRIC_KEYS}")
        known[name] = metric
    for arg, value in (("max_train", max_train), ("max_eval", max_eval), ("max_test", max_test)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{arg} must be None or a positive int, got {value!r}")
    if tasks is not None:
        order = list(tasks)
    elif order is None:
        order = 1 if manifest is None else list(known)
    names = resolve_order(order, known=known)
    missing = [n for n in names if not (root / n).is_dir()]
    if missing:
        present = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise FileNotFoundError(f"{root}: no task folder(s) {missing}; folders present: {present}")

    limits = {"train": max_train, "eval": max_eval, "test": max_test}
    loaded = []
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
        loaded.append(Task(name, known[name], splits["train"], splits["eval"], splits["test"]))
    label = f"trace:{root}" if manifest is None else str(manifest.get("name") or f"stream:{root}")
    return Stream(loaded, name=label)


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
