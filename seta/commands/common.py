"""What the `seta` sub-commands share: click's context settings, `user_errors`, a quiet transformers.

Bad input ends with one line (`Error: ...`) and a non-zero exit. torch is imported only after the
arguments have been checked.
"""

from __future__ import annotations

import functools

import click

CONTEXT = {"help_option_names": ["-h", "--help"]}


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def user_errors(fn):
    """ValueError / FileNotFoundError / NotADirectoryError from the package: `Error: <one line>`, exit 1."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ValueError, FileNotFoundError, NotADirectoryError) as err:
            raise click.ClickException(_one_line(err)) from None

    return wrapper


def _quiet_hf() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
