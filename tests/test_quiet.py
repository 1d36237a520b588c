"""Known, harmless third-party noise is silenced, and only that."""

import logging

import seta  # noqa: F401  (installs the filter)


def test_the_bitsandbytes_kernels_fallback_warning_is_dropped_and_nothing_else(caplog):
    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")  # the logger bitsandbytes' CPU backend uses
    with caplog.at_level(logging.WARNING):
        logger.warning("Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please make sure you already "
                       "`pip install kernels` and the kernels >= 0.11.1", ImportError("No module named 'kernels'"))
        logger.warning("another bitsandbytes warning")
    assert [r.getMessage() for r in caplog.records] == ["another bitsandbytes warning"]
