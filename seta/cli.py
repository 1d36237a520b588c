"""The `seta` command line (click). Each sub-command calls the package; none imports reproduce/.

    seta run       every method over a stream, then the reports (= python reproduce/run_all.py)
    seta train     one method over a stream, or `--from ADAPTER`: add tasks to a saved adapter
    seta plan      the memory plan of a preset (= seta run --dry-run)
    seta generate  route prompts through a saved adapter's gate and generate (text or JSONL)
    seta eval      score a saved adapter on a stream directory: scores, routing and the R row
    seta merge     a dense HF checkpoint: the base with one task's expert folded in
    seta export    one task's expert as a standard peft adapter (SHiRA), loadable without seta
    seta info      what a saved adapter holds: tasks, blocks, sharing, growth, routing statistics
    seta fetch     the real assets into a cache: SmolLM2, task streams, general ability (= reproduce/fetch_assets.py)

This module is the click group (the `seta` console script); the sub-commands live in `seta.commands`:
`seta run` is `seta.experiment.command.main`, plan and train are in `seta/commands/training.py`,
generate, eval, merge, export and info in `seta/commands/adapter.py`, fetch in `seta/commands/fetch.py`, what they share in `seta/commands/common.py`.

Bad input ends with one line (`Error: ...`) and a non-zero exit: every sub-command runs inside the one
error boundary (`seta.experiment.failures.error_boundary`). torch is imported only after the arguments
have been checked.
"""

from __future__ import annotations

import click

from seta import __version__
from seta.commands.adapter import evaluate, export, generate, info, merge
from seta.commands.common import CONTEXT
from seta.commands.fetch import main as fetch
from seta.commands.training import plan, train
from seta.experiment.command import main as run_command


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="seta")
def main() -> None:
    """SETA: Split-on-Share mixture of sparse experts for continual learning of LLMs."""


main.add_command(run_command, "run")
main.add_command(plan)
main.add_command(train)
main.add_command(generate)
main.add_command(evaluate)
main.add_command(merge)
main.add_command(export)
main.add_command(info)
main.add_command(fetch)


if __name__ == "__main__":  # pragma: no cover
    main()
