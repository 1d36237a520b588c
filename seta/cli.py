"""The `seta` command line (click). Sub-commands are added by the layers that own them."""

from __future__ import annotations

import click

from seta import __version__


@click.group()
@click.version_option(__version__, prog_name="seta")
def main() -> None:
    """SETA: Split-on-Share mixture of sparse experts for continual learning of LLMs."""


if __name__ == "__main__":  # pragma: no cover
    main()
