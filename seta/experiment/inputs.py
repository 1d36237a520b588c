"""What a run trains on: the task stream of a preset (`_load_stream`) and a factory of fresh copies of
its base model (`_base_factory`: a local HF model, or the tiny preset's pre-trained base, cached).

Shared by `seta run` (`seta.experiment.command`, which re-exports both: tests and reproduce/run_all.py
replace them there) and `seta train` (`seta.commands.training`). torch is imported inside, when called.
"""

from __future__ import annotations

from pathlib import Path

import click


def _load_stream(preset, data_dir, seed: int):
    from seta.data import load_trace, synthetic_stream

    if data_dir is not None:
        keep = ("order", "tasks", "max_train", "max_eval", "max_test")
        return list(load_trace(data_dir, **{k: v for k, v in preset.stream.items() if k in keep}, seed=seed))
    if preset.needs_model_path:
        raise click.UsageError(f"--preset {preset.name} needs --data-dir pointing at a TRACE-format directory")
    return list(synthetic_stream(seed=seed, **preset.stream))


def _base_factory(preset, model_path, tokenizer, cache_dir, progress=True):
    """A function returning a fresh copy of the base model for each method."""
    from seta.models import build_tiny_model, load_base_model

    import torch

    if preset.needs_model_path or model_path is not None:
        if model_path is None:
            raise click.UsageError(f"--preset {preset.name} needs --model PATH (a local HF model directory)")
        def hf_factory():
            return load_base_model(model_path, load_in_4bit=preset.load_in_4bit, dtype=preset.dtype,
                                   device_map="auto" if torch.cuda.is_available() else "cpu",
                                   gradient_checkpointing=preset.train.gradient_checkpointing)

        local = Path(model_path).is_dir()
        name = str(Path(model_path).resolve()) if local else str(model_path)
        hf_factory.source = {"kind": "hf", "model": name, "tokenizer": name, "dtype": preset.dtype,
                             "load_in_4bit": preset.load_in_4bit}  # what the adapter card records
        return hf_factory
    from seta.data import generic_corpus
    from seta.train.pretrain import cached_pretrained_base

    texts = list(generic_corpus(preset.train.seed).train)
    key = {"arch": preset.arch, **preset.tiny_model}

    def build():
        return build_tiny_model(preset.arch, tokenizer=tokenizer, seed=preset.train.seed, **preset.tiny_model)

    def factory():
        model, path = cached_pretrained_base(build, key, tokenizer, texts, preset.pretrain, cache_dir, progress=progress)
        for p in model.parameters():
            p.requires_grad_(False)
        path = str(Path(path).resolve())  # the adapter card records it: the base and its tokenizer live there
        factory.source = {"kind": "tiny", "model": path, "tokenizer": path, "dtype": "float32", "load_in_4bit": False}
        return model

    return factory
