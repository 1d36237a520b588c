"""Run every method over a stream and write summary.json, summary.md, plots and adapters.

    python reproduce/run_all.py                      # the embedded default on CPU -> results/tiny/
    python reproduce/run_all.py --quick              # a smoke run of every method
    python reproduce/run_all.py --preset llama2-7b --model PATH --data-dir TRACE_DIR
    python reproduce/run_all.py --preset qwen3-4b --dry-run   # memory plan only
    python reproduce/run_all.py ... --general-data DIR      # + MMLU/BBH/PIQA through lm-eval, before and after

The paper-facing entry point: the same click command as `seta run` (seta/experiment/command.py),
whose code, presets (seta/experiment/presets.py) and reports (seta/experiment/results.py) it shares.
"""

from __future__ import annotations

from seta.experiment.command import (_base_factory, _load_stream, dry_run, main,  # noqa: F401
                                     parse_methods, parse_seeds, run)


if __name__ == "__main__":
    main()
