"""`seta plan` (the memory plan of a preset) and `seta train` (one method over a stream, or `--from
ADAPTER`: more tasks for a saved adapter). The arguments are checked before torch is imported."""

from __future__ import annotations

from pathlib import Path

import click

from seta.commands.common import CONTEXT, _quiet_hf, user_errors
from seta.experiment.choices import PAPER_PRESETS, PRESET_NAMES, QUICK_PRESETS
from seta.experiment.failures import check_dir_option, check_writable
from seta.experiment.options import settings_options


# ---- plan ---------------------------------------------------------------------------------------------
@click.command(context_settings=CONTEXT)
@click.option("--preset", type=click.Choice(sorted(PRESET_NAMES)), default="tiny", show_default=True)
@click.option("--quick", is_flag=True, help="The smoke-run sizes of the preset (tiny, smollm2).")
@user_errors
def plan(preset, quick):
    """Print the memory plan of a preset (what `seta run --dry-run` prints)."""
    if quick and preset not in QUICK_PRESETS:
        raise click.UsageError(f"--quick exists for {' and '.join(QUICK_PRESETS)} only, not --preset {preset}")
    from seta.experiment.command import dry_run
    from seta.experiment.presets import PRESETS, QUICKS

    dry_run(QUICKS[preset] if quick else PRESETS[preset])


# ---- train --------------------------------------------------------------------------------------------
@click.command(context_settings=CONTEXT)
@click.option("--method", default="seta", show_default=True, help="One method (see `seta run --help`).")
@click.option("--preset", type=click.Choice(sorted(PRESET_NAMES)), default="tiny", show_default=True)
@click.option("--quick", is_flag=True, help="The preset's smoke-run sizes (tiny, smollm2: one epoch, small splits).")
@click.option("--data-dir", type=click.Path(), default=None, help="Stream directory (TRACE layout or stream.json).")
@click.option("--tasks", "task_names", default=None,
              help="Comma-separated tasks, in this order: of --data-dir, else of the synthetic stream (tiny).")
@click.option("--model", "model_path", type=click.Path(), default=None, help="Local HF model directory or hub id.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Output folder: OUT/adapter, OUT/result.json, OUT/train.log.")
@click.option("--from", "from_adapter", type=click.Path(path_type=Path), default=None,
              help="A saved SETA adapter to continue: its tasks stay, --tasks are trained after them.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="With --from: epochs of each new task.")
@settings_options("seta run --show-settings", "--set train.lr=1e-3")
@click.option("--tensorboard", is_flag=True, help="Also write OUT/metrics.jsonl's records to OUT/tensorboard.")
@user_errors
def train(method, preset, quick, data_dir, task_names, model_path, seed, out, from_adapter, epochs, no_progress,
          config_file, overrides, tensorboard):
    """Train one method over a task stream (or add tasks to a saved adapter) into --out."""
    from seta.experiment.command import _read_settings, parse_methods

    file_data = _read_settings(config_file, overrides, tensorboard)  # syntax only: no torch yet
    if from_adapter is not None and (config_file is not None or overrides):
        raise click.UsageError("--from takes the settings from the adapter; drop --config/--set")

    names = parse_methods(method)
    if len(names) != 1:
        raise click.BadParameter("give one method (seta run trains several)", param_hint="--method")
    if data_dir is not None:
        check_dir_option(data_dir, "--data-dir", "data directory")
    if quick and preset not in QUICK_PRESETS:
        raise click.UsageError(f"--quick exists for {' and '.join(QUICK_PRESETS)} only, not --preset {preset}")
    if from_adapter is not None:
        from seta.inference.card import read_card

        read_card(from_adapter)
        if task_names is None:
            raise click.UsageError("--from needs --tasks: the new tasks to add")
        if model_path is not None or preset != "tiny" or quick:
            raise click.UsageError("--from takes the base and settings from the adapter; drop --model/--preset/--quick")
    elif epochs is not None:
        raise click.UsageError("--epochs goes with --from")
    if preset in PAPER_PRESETS and (model_path is None or data_dir is None):
        raise click.UsageError(f"--preset {preset} needs --model PATH and --data-dir PATH")
    check_writable(out)
    from dataclasses import replace

    from seta.experiment import command, results
    from seta.experiment.method import continue_adapter, stream_sources, train_method
    from seta.experiment.presets import PRESETS, QUICKS, with_tasks

    cfg = QUICKS[preset] if quick else PRESETS[preset]
    if cfg.assets and from_adapter is None:  # the fetched SmolLM2 and BIG-bench stream, unless given
        model_path, data_dir, _ = command.asset_paths(model_path, data_dir, None)
    if from_adapter is not None and data_dir is None:  # new synthetic tasks of the adapter's sizes
        synthetic = [t["source"]["synthetic"] for t in read_card(from_adapter)["tasks"] if "synthetic" in t["source"]]
        cfg = replace(cfg, stream=synthetic[0] if synthetic else cfg.stream)
    if data_dir is not None:
        cfg = with_tasks(cfg, task_names, data_dir)
    elif task_names is not None:
        cfg = replace(cfg, stream={**cfg.stream, "order": [t.strip() for t in task_names.split(",") if t.strip()]})
    cfg = command._apply_settings(cfg, file_data, overrides, config_file)
    tasks = command._load_stream(cfg, data_dir, seed)
    sources = [stream_sources(cfg, data_dir, seed)] * len(tasks)
    if no_progress:
        _quiet_hf()
    if from_adapter is not None:
        res, strategy = continue_adapter(from_adapter, tasks, sources, out, progress=not no_progress, epochs=epochs)
    else:
        from seta.data import build_tiny_tokenizer
        from seta.models import load_tokenizer

        tokenizer = load_tokenizer(model_path) if model_path else build_tiny_tokenizer()
        cfg = replace(cfg, train=replace(cfg.train, seed=seed))
        factory = command._base_factory(cfg, model_path, tokenizer, out.parent / ".cache", not no_progress)
        res, strategy = train_method(names[0], factory, tokenizer, tasks, cfg, out, seed=seed, sources=sources,
                                     progress=not no_progress, tensorboard=tensorboard)
    results.write_train_result(out, res, seed)
    last = [None if v != v else round(v, 1) for v in res.R[-1]]
    click.echo(f"{res.method}: tasks {', '.join(res.tasks)}")
    routing = "" if res.routing_acc is None else f"  routing {res.routing_acc:.1f}%"
    click.echo(f"  OP {res.OP:.1f}  BWT {res.BWT:.1f}{routing}  last row of R {last}")
    written = [f for f in ("result.json", "metrics.jsonl", "train.log", "checkpoint.safetensors") if (out / f).exists()]
    click.echo(f"wrote {out}/: {', '.join(written)}")
    if (out / "adapter").is_dir():
        click.echo(f"  adapter: {out / 'adapter'}  (seta info / generate / eval / merge take this folder)")
