"""seta.experiment: what `seta run` and reproduce/run_all.py do, as a library.

    presets      the embedded tiny default and the paper-scale configurations
    command      the `seta run` click command: every method over a stream, then the reports
    results      finished results of an output folder and the reports rebuilt from them
    memory_plan  the memory plan of a preset (--dry-run, `seta plan`)
    failures     one-line messages and exit codes for runs that cannot go on
    choices      names the command lines check before torch is imported

Importing this package (and `choices`, `failures`, `command`) does not import torch.
"""
