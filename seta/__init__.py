"""SETA: Split-on-Share mixture of sparse experts for task-agnostic continual learning.

Layers (an import only points down):
    seta.core    framework-free maths on tensors (blocks, sensitivity, allocation,
                 anchoring, routing statistics, continual metrics)
    seta.data    task streams, TRACE loader, synthetic stream, tokenisation
    seta.models  sparse block experts on Hugging Face causal LMs, the gate, I/O
    seta.eval    task scorers and reports
    seta.train   the continual loop, SETA and baseline strategies
    seta.api     SETA as a library: SetaConfig + get_seta_model, task by task in your own loop (docs/api.md);
                 built on seta.models and seta.train's gate training; the SETA strategy of seta.train is its client
    seta.inference  a saved adapter with its base: route, generate, score, merge (adapter cards)
    seta.experiment what `seta run` / reproduce/run_all.py do: presets, one method over a stream, reports
    seta.commands   the sub-commands of `seta` (plan, train; generate, eval, merge, info)
    seta.cli     the `seta` command line (run, train, plan, generate, eval, merge, info): the click group
"""

__version__ = "0.1.0"

_API = ("SetaConfig", "SetaContinualModel", "get_seta_model")  # from seta.api, imported on first use (torch)


def __getattr__(name: str):
    if name in _API:
        import seta.api

        return getattr(seta.api, name)
    raise AttributeError(f"module 'seta' has no attribute {name!r}")


def _silence_known_noise() -> None:
    """bitsandbytes >= 0.49 on a CPU with AVX512-BF16 warns at import that the optional `kernels` package
    could not fetch a faster 4-bit CPU kernel, and falls back to its own (correct) one: drop that warning
    only, for every run, before anything imports bitsandbytes. Every other bitsandbytes message stays."""
    import logging

    class _DropKernelsFallback(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return not str(record.msg).startswith("Failed to load CPU gemm_4bit_forward from kernels-community")

    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    if not any(isinstance(f, _DropKernelsFallback) or type(f).__name__ == "_DropKernelsFallback" for f in logger.filters):
        logger.addFilter(_DropKernelsFallback())


_silence_known_noise()
