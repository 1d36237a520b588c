"""A GGUF checkpoint -> an ordinary local HF model folder (safetensors, config, tokenizer, chat template).

transformers reads GGUF through the `gguf` package: `from_pretrained(folder, gguf_file=name)`
turns every tensor back into a dense one. Such a model carries a GGUF quantizer marker, and
`save_pretrained` refuses it ("quantized with gguf and is not serializable"). In
transformers 5.x the right way out is to ask for dense weights up front,
`quantization_config=GgufConfig(dequantize=True)`, and to clear any marker left with the
quantizer's own `hf_quantizer.remove_quantization_config(model)`; then `save_pretrained`
writes a folder that loads like any local HF model, without `gguf`.

The folder is saved in float32: a Q4_1 weight is a 4-bit code times an fp16 scale plus an
fp16 minimum, which float32 holds exactly while bfloat16 would round it a second time, and
float32 is what the CPU runs here compute in. The conversion is checked before it is kept:
the saved folder is loaded back and its logits must equal the GGUF-loaded model's.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

STAMP = "seta_conversion.json"  # written last into a converted folder: source, dtype, checks


def _require_gguf() -> None:
    try:
        import gguf  # noqa: F401
    except ImportError as err:
        raise ImportError("reading GGUF files needs the gguf package: pip install gguf "
                          "(it is in seta's dev extras: pip install -e '.[dev]')") from err


def load_gguf(path: str | Path, dtype=torch.float32):
    """(model, tokenizer) from one .gguf file, dense and free of the quantizer marker."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _require_gguf()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: GGUF file not found")
    kwargs = {}
    try:
        from transformers import GgufConfig  # transformers >= 5: GGUF loading is a quantizer

        kwargs["quantization_config"] = GgufConfig(dequantize=True)
    except ImportError:  # transformers 4.x dequantises on load and has no marker to clear
        pass
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=dtype, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise ValueError(f"{path}: transformers could not load this GGUF file ({type(err).__name__}: {err})") from err
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)  # what save_pretrained checks
    return model.eval(), tokenizer


def parameter_count(model) -> int:
    """Number of distinct parameters (a tied embedding / output matrix counts once)."""
    return sum(p.numel() for p in model.parameters())


def _probe_ids(model) -> torch.Tensor:
    vocab = model.config.get_text_config().vocab_size
    return (torch.arange(1, 17) * 7919 % vocab).unsqueeze(0)  # (1, 16) fixed ids spread over the vocabulary


@torch.no_grad()
def greedy_answer(model, tokenizer, question: str, max_new_tokens: int = 32) -> str:
    """Greedy reply to `question`, through the chat template when the tokenizer has one."""
    if getattr(tokenizer, "chat_template", None):
        batch = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                              return_tensors="pt", return_dict=True)
    else:
        batch = tokenizer(question, return_tensors="pt")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], do_sample=False,
                         max_new_tokens=max_new_tokens, pad_token_id=pad)
    return tokenizer.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def convert_gguf(path: str | Path, out_dir: str | Path, dtype: str = "float32", source: str | None = None) -> dict:
    """Convert one .gguf file into the HF folder `out_dir` (which must not exist yet); returns the stamp.

    Written into a temporary sibling folder, checked (reloaded; logits equal to the GGUF model's),
    then renamed into place, so `out_dir` is either complete or absent.
    """
    from transformers import AutoModelForCausalLM

    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16}
    if dtype not in dtypes:
        raise ValueError(f"dtype must be one of {sorted(dtypes)}, got {dtype!r}")
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} exists already; delete it to convert again")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    model, tokenizer = load_gguf(path, dtypes[dtype])
    tmp = Path(tempfile.mkdtemp(prefix=f".partial-{out_dir.name}-", dir=out_dir.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # an ordinary folder once renamed, not mkdtemp's 0700
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        reloaded = AutoModelForCausalLM.from_pretrained(tmp, dtype=dtypes[dtype]).eval()
        ids = _probe_ids(model)
        with torch.no_grad():
            diff = (model(ids).logits - reloaded(ids).logits).abs().max().item()
        if diff != 0.0:
            raise ValueError(f"{path}: the saved folder's logits differ from the GGUF model's by {diff:.3g}; "
                             "the conversion is not faithful (check the transformers and gguf versions)")
        import transformers

        stamp = {"source": source or str(path), "dtype": dtype, "parameters": parameter_count(reloaded),
                 "max_abs_logit_diff": diff, "seconds": round(time.perf_counter() - start, 1),
                 "transformers": transformers.__version__}
        (tmp / STAMP).write_text(json.dumps(stamp, indent=1) + "\n", encoding="utf-8")
        os.rename(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return stamp
