"""What the `seta` sub-commands share: click's context settings, `user_errors`, a quiet transformers.

Bad input ends with one line (`Error: ...`) and a non-zero exit: `user_errors` is the package's one
error boundary (`seta.experiment.failures.error_boundary`). torch is imported only after the arguments
have been checked.
"""

from __future__ import annotations

import click

from seta.experiment.failures import error_boundary

CONTEXT = {"help_option_names": ["-h", "--help"]}


user_errors = error_boundary
"""A damaged input, a missing or unwritable path, a package error: `Error: <one line>`, exit 1; a bug keeps
its traceback (see `error_boundary`)."""


def _quiet_hf() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
