"""Loading base causal LMs: local directory or hub id, optional 4-bit NF4, tiny models for CPU runs.

Order for a quantised base (docs/method.md §5):

    load (4-bit NF4, double quantisation, bf16 compute)
    -> prepare_for_kbit_training (freeze, up-cast non-quantised half params to fp32,
       gradient checkpointing with use_reentrant=False)
    -> attach_experts  (experts are created *after* preparation, so they are neither frozen nor recast)
"""

from __future__ import annotations

import json
import os
import tempfile
from importlib import resources
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "load_base_model",
    "load_tokenizer",
    "nf4_config",
    "prepare_for_kbit_training",
    "enable_gradient_checkpointing",
    "build_tiny_model",
    "tiny_config",
    "architecture_config",
    "build_from_architecture",
    "TINY_DEFAULTS",
    "keep_4bit_differentiable",
]

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# Tiny decoder shapes for CPU tests and smoke runs (hidden 64, 2 layers).
TINY_DEFAULTS = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, max_position_embeddings=256)


def _dtype(dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)} or a torch.dtype, got {dtype!r}")
    return _DTYPES[dtype]


def nf4_config(compute_dtype=torch.bfloat16):
    """BitsAndBytesConfig for 4-bit NF4 with double quantisation (QLoRA's setting)."""
    try:
        from transformers import BitsAndBytesConfig
        import bitsandbytes  # noqa: F401
    except ImportError as err:
        raise ValueError("4-bit loading needs bitsandbytes: pip install 'seta[quant]'") from err
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=_dtype(compute_dtype))


def _offline_error(name: str, err: Exception) -> FileNotFoundError:
    return FileNotFoundError(
        f"could not load {name!r}: it is not a local directory and the Hugging Face hub is unreachable or "
        f"does not have it ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). On a machine "
        f"with network run `huggingface-cli download {name} --local-dir DIR`, copy DIR here and pass DIR as the "
        "model path (or set HF_HOME to a cache that already holds the model)."
    )


def _resolve(name_or_path: str | os.PathLike) -> tuple[str, bool]:
    """(name, is_local). A path-like name that does not exist is an error right away (no hub lookup)."""
    name = str(name_or_path)
    if Path(name).is_dir():
        if not (Path(name) / "config.json").is_file():
            raise FileNotFoundError(f"{name!r} is not a loadable HF model directory: it has no config.json. "
                                    "Pass the directory that holds config.json and the weights.")
        return name, True
    if name.startswith((".", "/", "~")) or os.sep + os.sep in name or name.count("/") > 1:
        raise FileNotFoundError(f"model directory {name!r} does not exist; pass a local HF model directory "
                                "(with config.json and weights) or a hub id like 'Qwen/Qwen3-4B'")
    return name, False


def load_base_model(name_or_path, *, load_in_4bit: bool = False, dtype="bfloat16", device_map=None,
                    gradient_checkpointing: bool = False, local_files_only: bool | None = None):
    """Load an HF causal LM from a local directory or a hub id.

    load_in_4bit: NF4 + double quantisation + bf16 compute (see `nf4_config`), then
    `prepare_for_kbit_training`. device_map: e.g. "cpu", "cuda:0" or "auto" (4-bit needs one; "cpu"
    works with bitsandbytes >= 0.45). gradient_checkpointing: non-reentrant checkpointing.
    local_files_only: never touch the network (default: the HF_HUB_OFFLINE environment variable).
    Experts must be attached afterwards (`attach_experts`).
    """
    from transformers import AutoModelForCausalLM

    name, is_local = _resolve(name_or_path)
    if local_files_only is None:
        local_files_only = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    offline = local_files_only or is_local  # a local directory never touches the hub
    # adapter_kwargs: transformers' peft adapter lookup does not inherit local_files_only
    kwargs: dict = {"local_files_only": offline, "adapter_kwargs": {"local_files_only": offline}}
    if load_in_4bit:
        kwargs["quantization_config"] = nf4_config()
        kwargs["device_map"] = device_map or ("cuda:0" if torch.cuda.is_available() else "cpu")
    else:
        kwargs["dtype"] = _dtype(dtype)
        if device_map is not None:
            kwargs["device_map"] = device_map
    try:
        model = AutoModelForCausalLM.from_pretrained(name, **kwargs)
    except (OSError, ValueError) as err:
        if isinstance(err, ValueError) and not is_local:
            raise
        if is_local:
            raise FileNotFoundError(f"{name!r} is not a loadable HF model directory: {err}") from err
        raise _offline_error(name, err) from err
    if load_in_4bit:
        prepare_for_kbit_training(model, gradient_checkpointing=gradient_checkpointing)
    else:
        for p in model.parameters():
            p.requires_grad_(False)
        if gradient_checkpointing:
            enable_gradient_checkpointing(model)
    return model


def load_tokenizer(name_or_path, *, local_files_only: bool | None = None):
    """AutoTokenizer for a local directory or hub id, with a pad token (eos when the model has none)."""
    from transformers import AutoTokenizer

    name, is_local = _resolve(name_or_path)
    if local_files_only is None:
        local_files_only = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    try:
        tok = AutoTokenizer.from_pretrained(name, local_files_only=local_files_only or is_local)
    except OSError as err:
        if is_local:
            raise FileNotFoundError(f"{name!r} has no loadable tokenizer: {err}") from err
        raise _offline_error(name, err) from err
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


def max_positions(model) -> int | None:
    """Longest sequence (prompt + answer) the model was built for, from its HF config; None if unknown.
    Works through wrappers (SetaModel, peft): the first submodule with an HF config answers."""
    for module in model.modules():
        cfg = getattr(module, "config", None)
        if hasattr(cfg, "to_dict"):
            for key in POSITION_KEYS:
                value = getattr(cfg, key, None)
                if isinstance(value, int) and value > 0:
                    return value
            return None
    return None


def enable_gradient_checkpointing(model) -> None:
    """Non-reentrant activation checkpointing (use_reentrant=False: no input-grad hack needed)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x name
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def prepare_for_kbit_training(model, *, gradient_checkpointing: bool = True):
    """Freeze every parameter, up-cast non-quantised fp16/bf16 parameters (norms, embeddings, head)
    to fp32 for stable training, and optionally enable non-reentrant gradient checkpointing.

    Same protocol as peft's `prepare_model_for_kbit_training`. Call it *before* `attach_experts`.
    """
    keep_4bit_differentiable(model)  # bitsandbytes' CPU eval repacking has no autograd
    for p in model.parameters():
        p.requires_grad_(False)
        if p.dtype in (torch.float16, torch.bfloat16) and type(p).__name__ != "Params4bit":
            p.data = p.data.to(torch.float32)
    if gradient_checkpointing:
        enable_gradient_checkpointing(model)
    return model


def architecture_config(name: str):
    """HF config of a shipped architecture ('llama2-7b', 'qwen3-4b', ...): shapes only, no weights.

    Use `build_from_architecture(name, device="meta")` to count blocks or plan memory without weights.
    """
    from transformers import AutoConfig

    files = {p.stem: p for p in resources.files("seta.configs").iterdir() if p.name.endswith(".json")}
    if name not in files:
        raise ValueError(f"unknown architecture {name!r}; shipped: {sorted(files)}")
    data = json.loads(files[name].read_text())
    return AutoConfig.for_model(data.pop("model_type"), **data)


def build_from_architecture(name: str, device="meta", dtype="bfloat16"):
    """Instantiate a shipped architecture with no real weights (device="meta" by default)."""
    from transformers import AutoModelForCausalLM

    config = architecture_config(name)
    with torch.device(device):
        return AutoModelForCausalLM.from_config(config, dtype=_dtype(dtype))


def tiny_config(arch: str = "llama", *, vocab_size: int | None = None, tokenizer=None, **overrides):
    """The HF config of `build_tiny_model` (TINY_DEFAULTS + overrides; vocab and special ids from the tokenizer)."""
    from transformers import LlamaConfig, Qwen3Config

    archs = {"llama": LlamaConfig, "qwen3": Qwen3Config}
    if arch not in archs:
        raise ValueError(f"arch must be one of {sorted(archs)}, got {arch!r}")
    if tokenizer is not None:
        vocab_size = len(tokenizer)
        for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
            overrides.setdefault(key, getattr(tokenizer, key, None))
    if not vocab_size:
        raise ValueError("build_tiny_model needs vocab_size or a tokenizer")
    fields = {**TINY_DEFAULTS, **overrides}
    if arch == "qwen3":
        fields.setdefault("head_dim", fields["hidden_size"] // fields["num_attention_heads"])
    return archs[arch](vocab_size=vocab_size, **fields)


def build_tiny_model(arch: str = "llama", *, vocab_size: int | None = None, tokenizer=None, seed: int = 0,
                     dtype="float32", load_in_4bit: bool = False, gradient_checkpointing: bool = False, **overrides):
    """A randomly initialised tiny Llama- or Qwen3-architecture causal LM for CPU runs.

    Shapes default to TINY_DEFAULTS (hidden 64, 2 layers); `overrides` change any config field.
    vocab_size or tokenizer (its length and special ids are used) must be given. load_in_4bit: the
    model is saved to a temporary directory and reloaded through `load_base_model` as NF4 on the CPU
    (or the GPU when one is present), exactly as a real base would be. Parameters come back frozen.
    """
    from transformers import LlamaForCausalLM, Qwen3ForCausalLM

    config = tiny_config(arch, vocab_size=vocab_size, tokenizer=tokenizer, **overrides)
    torch.manual_seed(seed)
    model = {"llama": LlamaForCausalLM, "qwen3": Qwen3ForCausalLM}[arch](config).to(_dtype(dtype))
    model.eval()
    if not load_in_4bit:
        for p in model.parameters():
            p.requires_grad_(False)
        if gradient_checkpointing:
            enable_gradient_checkpointing(model)
        return model
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        quantised = load_base_model(tmp, load_in_4bit=True, gradient_checkpointing=gradient_checkpointing)
    quantised.eval()
    return quantised


def keep_4bit_differentiable(model: nn.Module) -> int:
    """bitsandbytes >= 0.49 on a CPU with AVX512-BF16 repacks a Linear4bit's weight, at its first
    eval-mode forward without grad, for a gemv kernel that has no autograd (input gradients come back
    None, silently) and rounds the quantisation scales to bf16. Turn that off for every Linear4bit of
    `model` and undo a repacking that already happened, so 4-bit layers stay differentiable and give
    the same outputs in train and eval mode. Returns the number of layers changed. No-op on GPU."""
    try:
        import bitsandbytes as bnb
        from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse
    except ImportError:
        return 0
    changed = 0
    for m in model.modules():
        if isinstance(m, bnb.nn.Linear4bit):
            if getattr(m, "support_avx512bf16_for_cpu", False):
                m.support_avx512bf16_for_cpu = False
                changed += 1
            state = getattr(m.weight, "quant_state", None)
            if state is not None and getattr(state, "packing_format_for_cpu", False):
                m.weight.data, m.weight.quant_state = _convert_weight_packed_for_cpu_inverse(m.weight.data, state)
    return changed
