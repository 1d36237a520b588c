"""The command line's values, checked before torch is imported: --methods, --seeds, --config and --set,
--general-data, and the asset paths of an assets preset. A mistake ends with one line (exit 2 for
usage errors), never a traceback; `seta.experiment.command` and `seta.cli` share these."""

from __future__ import annotations

from dataclasses import replace

import click

from seta.experiment.choices import MAX_SEED
from seta.experiment.failures import fail
from seta.train.strategies import STRATEGIES  # names only: no torch

__all__ = ["asset_paths", "parse_methods", "parse_seeds", "settings_options"]


def settings_options(show_settings: str, set_example: str):
    """--no-progress, --config and --set, as `seta run` and `seta train` both take them; show_settings
    names where the settings are listed, set_example is the --set example of the help."""
    def wrap(fn):
        fn = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                          help=f"Override one setting after --config, e.g. {set_example} (repeatable).")(fn)
        fn = click.option("--config", "config_file", type=click.Path(), default=None,
                          help="JSON or YAML file of settings over the preset: sections train, sparse, gate "
                               f"(see {show_settings}).")(fn)
        return click.option("--no-progress", is_flag=True, help="Hide progress bars.")(fn)
    return wrap


def asset_paths(model_path, data_dir, general_data):
    """`seta.assets.asset_paths` for the command line: a missing asset is a usage error (exit 2)."""
    from seta.assets import asset_paths as paths

    try:
        return paths(model_path, data_dir, general_data)
    except FileNotFoundError as err:
        raise click.UsageError(str(err)) from None


_asset_paths = asset_paths  # the name `seta train` used


def _read_settings(config_file, overrides, tensorboard: bool):
    """--config's sections and --set's syntax (and --tensorboard's package), checked before torch is imported;
    a mistake ends with one line, exit 2."""
    from seta.train.run_config import ConfigError, parse_set, read_config_file

    if tensorboard:
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None:
            fail("--tensorboard needs the tensorboard package: pip install 'seta[tensorboard]'", 2)
    try:
        parse_set(overrides)
        return read_config_file(config_file) if config_file is not None else None
    except ConfigError as err:
        fail(str(err), 2)


def _apply_settings(cfg, file_data, overrides, config_file):
    """The preset with --config, then every --set, applied (typed and validated field by field)."""
    from seta.train.run_config import ConfigError, resolve

    try:
        settings = resolve(cfg.settings(), file_data, overrides, source=str(config_file))
    except ConfigError as err:
        fail(str(err), 2)
    return replace(cfg, **settings)


def parse_methods(text: str) -> list[str]:
    names = list(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))  # in order, once each
    if not names:
        raise click.BadParameter(f"give at least one method, e.g. --methods seta,ewc (known: {', '.join(STRATEGIES)})",
                                 param_hint="--methods")
    unknown = [m for m in names if m not in STRATEGIES]
    if unknown:
        raise click.BadParameter(f"unknown method(s) {unknown}; known: {', '.join(STRATEGIES)}", param_hint="--methods")
    return names


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = list(dict.fromkeys(int(s) for s in text.split(",") if s.strip()))
    except ValueError:
        raise click.BadParameter(f"seeds must be comma-separated integers, got {text!r}", param_hint="--seeds") from None
    if not seeds:
        raise click.BadParameter("give at least one seed, e.g. --seeds 0,1,2", param_hint="--seeds")
    bad = [s for s in seeds if not 0 <= s <= MAX_SEED]
    if bad:
        raise click.BadParameter(f"seeds must lie in 0..{MAX_SEED} (NumPy's range), got {bad[0]}", param_hint="--seeds")
    return seeds


def _load_general(path, tasks: str, limit):
    """Read and check --general-data before any training, so that a bad file costs seconds, not hours."""
    if path is None:
        return None
    try:
        from seta.eval.harness import load_general_data  # fails early without lm-eval
    except ImportError as err:
        raise click.UsageError(str(err))
    try:
        return load_general_data(path, [t.strip() for t in tasks.split(",") if t.strip()], limit=limit)
    except (ValueError, FileNotFoundError) as err:
        raise click.ClickException(str(err))
