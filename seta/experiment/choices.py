"""The names the command lines check before anything heavy is imported (no torch, no transformers).

seta.experiment.presets builds the presets themselves; `tests/reproduce` checks that both agree.
"""

# the default list: SETA, its two diagnostic ablations (oracle routing: routing errors vs forgetting; raw
# allocation: the allocation rule), and every baseline
ALL_METHODS = ["seta", "seta-oracle", "seta-raw", "seqft-sparse", "seq-lora", "o-lora", "arrow", "osf", "ewc", "replay",
               "lwf", "independent", "mtl"]
ABLATIONS = ["seta-no-anchor", "seta-no-reuse", "seta-no-routing-reg", "seta-soft"]
PRESET_NAMES = ["llama2-7b", "qwen3-4b", "smollm2", "tiny"]
QUICK_PRESETS = ["smollm2", "tiny"]  # presets with a --quick variant
ASSET_PRESETS = ["smollm2"]  # model, stream and BBH default to the fetched assets
PAPER_PRESETS = ["llama2-7b", "qwen3-4b"]  # need --model PATH and --data-dir PATH
MAX_SEED = 2**32 - 1  # NumPy's seeds lie in [0, 2**32)
