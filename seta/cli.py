"""The `seta` command line (click). Each sub-command calls the package; none imports reproduce/.

    seta run       every method over a stream, then the reports (= python reproduce/run_all.py)
    seta train     one method over a stream (or continue a saved adapter with new tasks)
    seta plan      the memory plan of a preset
    seta generate  route prompts through a saved adapter's gate and generate
    seta eval      score a saved adapter on a stream directory (scores and the R row)
    seta merge     a dense HF checkpoint of the base with one task's expert folded in
    seta info      what a saved adapter holds

Bad input ends with one line (`Error: ...`) and a non-zero exit. torch is imported only once the
arguments have been checked.
"""

from __future__ import annotations

import click

from seta import __version__
from seta.experiment.choices import PRESET_NAMES
from seta.experiment.command import main as run_command

CONTEXT = {"help_option_names": ["-h", "--help"]}


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="seta")
def main() -> None:
    """SETA: Split-on-Share mixture of sparse experts for continual learning of LLMs."""


main.add_command(run_command, "run")


@main.command(context_settings=CONTEXT)
@click.option("--preset", type=click.Choice(sorted(PRESET_NAMES)), default="tiny", show_default=True)
@click.option("--quick", is_flag=True, help="The smoke-run sizes of the tiny preset.")
def plan(preset, quick):
    """Print the memory plan of a preset (what `seta run --dry-run` prints)."""
    if quick and preset != "tiny":
        raise click.UsageError("--quick plans the tiny preset only")
    from seta.experiment.command import dry_run
    from seta.experiment.presets import PRESETS, QUICK

    dry_run(QUICK if quick else PRESETS[preset])


if __name__ == "__main__":  # pragma: no cover
    main()
