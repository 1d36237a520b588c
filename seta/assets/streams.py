"""Optional BIG-bench data: tasks (task.json files inside a user's own `bigbench` sdist) become folders.

The index no longer serves `bigbench==1.0.0`; `seta fetch --bigbench-archive PATH` uses a copy the user
has (`seta.assets.fetch.fetch_bigbench`). `written_then_renamed` is shared with the real-source builders.

`ensure_stream`: a stream directory in the TRACE layout with a `stream.json` manifest
(`<cache>/streams/<name>/`); `ensure_general`: BBH tasks as a general-ability folder
(`<cache>/general/bbh/`, the `seta.eval.general_data` layout). Each is rebuilt only when its archive,
tasks or settings change (`cached_stream`, `cached_general`), and written in a `.partial-*` sibling,
then renamed (`written_then_renamed`). `seta.assets.fetch.fetch_all` calls both.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from seta.assets.pypi import partial_dir
from seta.data.bigbench import bbh_general, bigbench_task, read_bigbench_tasks
from seta.data.trace import read_manifest, write_manifest, write_trace
from seta.data.types import Stream


@dataclass(frozen=True)
class StreamSettings:
    """How BIG-bench tasks become a stream directory (see `seta.data.bigbench` for the rules)."""

    seed: int = 0  # seeds the splits and the choice shuffles
    max_train: int = 1000  # train examples per task, at most
    max_eval: int = 100  # eval examples per task, at most (0: none)
    max_test: int = 200  # test examples per task, at most
    eval_fraction: float = 0.1  # eval share of a task's examples before the cap
    test_fraction: float = 0.2  # test share of a task's examples before the cap
    allow_bbh: bool = False  # BIG-Bench Hard tasks are refused unless True


@contextlib.contextmanager
def written_then_renamed(out_dir: Path):
    """Yields a new `.partial-*` sibling of `out_dir` to write into; when the block ends without an
    error, the sibling takes `out_dir`'s name (an existing `out_dir` is set aside first and put back if
    the rename fails: the old entry rather than none). Nothing half-written ever carries the name."""
    tmp = partial_dir(out_dir.parent, out_dir.name + "-")
    stale = tmp.with_name(tmp.name + "-old")
    try:
        yield tmp
        if out_dir.exists():
            os.rename(out_dir, stale)
        try:
            os.rename(tmp, out_dir)
        except OSError:
            if stale.exists():
                os.rename(stale, out_dir)  # keep the old entry rather than none
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(stale, ignore_errors=True)


def cached_stream(archive: Path, names: Sequence[str], out_dir: Path, settings: StreamSettings) -> dict | None:
    """The manifest of `out_dir` when it was built from the same archive, tasks and settings, else None."""
    try:
        old = read_manifest(out_dir) if out_dir.is_dir() else None
    except ValueError:
        return None  # an unreadable manifest: rebuild
    same = old and [t["name"] for t in old["tasks"]] == list(names)
    return old if same and old.get("source") == archive.name and old.get("settings") == asdict(settings) else None


def ensure_stream(archive: Path, names: Sequence[str], out_dir: Path, settings: StreamSettings = StreamSettings(),
                  log: Callable[[str], None] = print, found: dict | None = None) -> dict:
    """Build (or reuse) the stream directory `out_dir` from BIG-bench tasks `names`; returns its manifest.

    found: `read_bigbench_tasks(archive, ...)` already done for these names (saves a pass over the archive).
    """
    old = cached_stream(archive, names, out_dir, settings)
    if old is not None:
        return {**old, "cached": True}
    log(f"building {out_dir} from {len(names)} BIG-bench task(s) in {archive.name} ...")
    found = found if found is not None and set(names) <= set(found) else read_bigbench_tasks(archive, names)
    tasks = [bigbench_task(n, found[n][1], found[n][0], **asdict(settings)) for n in names]
    stream = Stream(tasks, name=out_dir.name)
    counts = {t.name: {"train": len(t.train), "eval": len(t.eval), "test": len(t.test)} for t in tasks}
    with written_then_renamed(out_dir) as tmp:
        write_trace(stream, tmp)
        write_manifest(stream, tmp, source=archive.name, settings=asdict(settings), counts=counts,
                       note="BIG-bench (Apache-2.0); never train on tasks used for evaluation")
    return {**read_manifest(out_dir), "cached": False}


GENERAL_FORMAT = 1  # of general.json and the rows (bump when `bbh_general` changes what it writes)


@dataclass(frozen=True)
class GeneralSettings:
    """How BBH tasks become a general-ability folder (see `seta.data.bigbench.bbh_general`)."""

    seed: int = 0  # seeds the test subset and the choice shuffles
    n_test: int = 50  # scored items per subtask, at most
    n_shots: int = 3  # few-shot exemplars per subtask (from the task's own examples, disjoint from test)


def cached_general(archive: Path, names: Sequence[str], out_dir: Path, settings: GeneralSettings) -> dict | None:
    """The manifest of `out_dir` when it was built from the same archive, tasks and settings, else None."""
    try:
        old = json.loads((out_dir / "general.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    want = {"format": GENERAL_FORMAT, "source": archive.name, "tasks": list(names), "settings": asdict(settings)}
    return old if isinstance(old, dict) and all(old.get(k) == v for k, v in want.items()) else None


def ensure_general(archive: Path, names: Sequence[str], out_dir: Path, settings: GeneralSettings = GeneralSettings(),
                   log: Callable[[str], None] = print, found: dict | None = None) -> dict:
    """Build (or reuse) `out_dir` = DIR with DIR/bbh/<subtask>/{test,fewshot}.jsonl from BBH tasks `names`.

    Returns its manifest (general.json: source, settings, counts). Written in a `.partial-*` sibling,
    then renamed, so a half-written folder never carries the final name.
    """
    old = cached_general(archive, names, out_dir, settings)
    if old is not None:
        return {**old, "cached": True}
    want = {"format": GENERAL_FORMAT, "source": archive.name, "tasks": list(names), "settings": asdict(settings)}
    log(f"building {out_dir} from {len(names)} BBH task(s) in {archive.name} ...")
    found = found if found is not None and set(names) <= set(found) else read_bigbench_tasks(archive, names)
    counts = {}
    with written_then_renamed(out_dir) as tmp:
        for name in names:
            test, shots = bbh_general(name, found[name][1], found[name][0], **asdict(settings))
            folder = tmp / "bbh" / name
            folder.mkdir(parents=True)
            for split, rows in (("test", test), ("fewshot", shots)):
                with open(folder / f"{split}.jsonl", "w", encoding="utf-8") as f:
                    f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
            counts[name] = {"test": len(test), "fewshot": len(shots)}
        manifest = {**want, "counts": counts, "note": "BIG-bench (Apache-2.0) BBH tasks: evaluation only, never train on them"}
        (tmp / "general.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return {**manifest, "cached": False}
