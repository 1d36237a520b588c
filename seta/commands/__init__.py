"""The sub-commands of the `seta` command line (click), by what they work on; `seta.cli` assembles them.

    common.py    what every command shares: the context settings, `user_errors`, quieting transformers
    training.py  seta plan, seta train (one method over a stream, or more tasks for a saved adapter)
    adapter.py   seta generate, seta eval, seta merge, seta info (a saved adapter)

`seta run` is `seta.experiment.command.main`. The layer above `seta.experiment` and `seta.inference`.
"""
