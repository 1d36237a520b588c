"""`seta run` (and reproduce/run_all.py): every method over a stream; summary.json, summary.md, plots, adapters.

    seta run                                     # the embedded default on CPU -> results/tiny/
    seta run --quick                             # a smoke run of every method
    seta run --preset llama2-7b --model PATH --data-dir TRACE_DIR
    seta run --preset qwen3-4b --dry-run         # memory plan only (also: seta plan)
    seta run ... --general-data DIR              # + MMLU/BBH/PIQA through lm-eval, before and after

`python reproduce/run_all.py` is the same command. The argument checks come before torch is imported.
The option checks and settings are in `seta/experiment/options.py`, the stream and the base model of a
run (`_load_stream`, `_base_factory`, imported here) in `seta/experiment/inputs.py`.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import click

from seta.experiment import results
from seta.experiment.choices import (ABLATIONS, ALL_METHODS, ASSET_PRESETS, PAPER_PRESETS, PRESET_NAMES,
                                     QUICK_PRESETS)
from seta.experiment.failures import (RunInterrupted, check_dir_option, check_writable, exit_code, fail,
                                      install_sigterm_handler, interrupted_message, user_message)
from seta.experiment.options import (_apply_settings, _asset_paths, _load_general, _read_settings,  # noqa: F401
                                     asset_paths, parse_methods, parse_seeds, settings_options)
from seta.experiment.inputs import _base_factory, _load_stream  # the stream and the base of a run
from seta.experiment.run_output import report_paths, results_table

# torch, transformers and the presets are imported after the arguments are checked (see main)
GENERAL_DEFAULT = "mmlu,bbh,piqa"


def dry_run(preset) -> None:
    """Build the architecture on the meta device and print the memory plan."""
    from seta.experiment.memory_plan import memory_plan

    click.echo(memory_plan(preset))


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--preset", type=click.Choice(sorted(PRESET_NAMES)), default="tiny", show_default=True, help="Configuration to run.")
@click.option("--methods", default=",".join(ALL_METHODS), show_default=True,
              help=f"Comma-separated methods; ablations: {', '.join(ABLATIONS)}.")
@click.option("--seeds", default="0", show_default=True, help="Comma-separated seeds (integers 0 to 2^32-1).")
@click.option("--out", type=click.Path(), default=None, help="Output directory (default results/<preset>).")
@click.option("--model", "model_path", type=click.Path(), default=None, help="Local HF model directory (paper presets).")
@click.option("--data-dir", type=click.Path(), default=None, help="TRACE-format data directory (any preset).")
@click.option("--tasks", "task_names", default=None, help="Comma-separated tasks of --data-dir to run, in this order.")
@click.option("--general-data", type=click.Path(), default=None,
              help="Directory of local MMLU/BBH/PIQA files (layout: seta/eval/harness.py): scored through "
                   "lm-evaluation-harness for the base and after each method's stream.")
@click.option("--general-tasks", default=GENERAL_DEFAULT, show_default=True,
              help="Comma-separated benchmarks of --general-data to run ('' skips general ability).")
@click.option("--general-limit", type=click.IntRange(min=1), default=None,
              help="Cap on the items scored per benchmark (spread over its subjects/subtasks).")
@click.option("--resume", is_flag=True, help="Continue each method from its last finished task (the checkpoint must "
                                             "belong to this run: same settings, data and base model).")
@click.option("--resume-force", is_flag=True, help="Like --resume, but continue even from a checkpoint of other "
                                                   "settings, data or base model.")
@click.option("--quick", is_flag=True, help="Smoke run of every method (tiny, or smollm2 on three tasks).")
@click.option("--4bit", "four_bit", is_flag=True, help="Load a real base model in 4-bit NF4 (bitsandbytes; CPU works).")
@click.option("--dry-run", is_flag=True, help="Print the memory plan and exit.")
@settings_options("--show-settings", "--set train.lr=1e-3 --set gate.steps=50")
@click.option("--show-settings", is_flag=True, help="Print every setting (key, type, resolved value, help) and exit.")
@click.option("--tensorboard", is_flag=True,
              help="Also write each run's metrics.jsonl records to <run>/tensorboard (pip install 'seta[tensorboard]').")
@click.option("--verbose", is_flag=True, help="At the end, also print summary.md (every table and R matrix).")
def main(preset, methods, seeds, out, model_path, data_dir, task_names, general_data, general_tasks, general_limit,
         resume, resume_force, quick, four_bit, dry_run, no_progress, config_file, overrides, show_settings,
         tensorboard, verbose):
    """Reproduce SETA and the baselines on one stream; write an honest report.

    Under torchrun (torchrun --nproc_per_node N reproduce/run_all.py ...) the methods train data-parallel
    (gloo on CPU, nccl on GPU); rank 0 evaluates and writes every file."""
    file_data = _read_settings(config_file, overrides, tensorboard)  # syntax only: no torch yet
    if quick and preset not in QUICK_PRESETS:
        raise click.UsageError(f"--quick exists for {' and '.join(QUICK_PRESETS)} only, not --preset {preset}")
    if four_bit and preset == "tiny":
        raise click.UsageError("--4bit loads a real base model: use it with --preset smollm2 or --model PATH")
    if dry_run:
        from seta.experiment.presets import PRESETS, QUICKS

        globals()["dry_run"](QUICKS[preset] if quick else PRESETS[preset])
        return
    names = parse_methods(methods)
    seed_list = parse_seeds(seeds)
    if model_path is not None:
        check_dir_option(model_path, "--model", "model directory")
    if data_dir is not None:
        check_dir_option(data_dir, "--data-dir", "data directory")
    if preset in PAPER_PRESETS and model_path is None:
        raise click.UsageError(f"--preset {preset} needs --model PATH (a local HF model directory) and --data-dir PATH")
    if preset in PAPER_PRESETS and data_dir is None:
        raise click.UsageError(f"--preset {preset} needs --data-dir pointing at a TRACE-format directory")
    if task_names is not None and data_dir is None and preset not in ASSET_PRESETS:
        raise click.UsageError("--tasks needs --data-dir (a stream directory to choose tasks from)")
    if general_data is None and general_limit is not None:
        raise click.UsageError("--general-limit needs --general-data")
    if general_data is not None:
        check_dir_option(general_data, "--general-data", "general-ability directory")
    out_dir = Path(out or f"results/{preset + '-quick' if quick else preset}")
    check_writable(out_dir)
    install_sigterm_handler()
    try:
        from seta.experiment.presets import PRESETS, QUICKS, with_tasks  # torch and transformers: only now

        cfg = QUICKS[preset] if quick else PRESETS[preset]
        if four_bit:
            cfg = replace(cfg, load_in_4bit=True)
        names = _dense_only_methods(names, cfg, methods == ",".join(ALL_METHODS))
        if cfg.assets:  # the fetched model, stream and general-ability folder, unless given
            if data_dir is not None:  # the preset's task list names the fetched stream's tasks, not this one's
                cfg = replace(cfg, stream={k: v for k, v in cfg.stream.items() if k != "tasks"})
            given = general_data is not None
            model_path, data_dir, general_data = asset_paths(model_path, data_dir, general_data)
            if not given:
                if general_data is None:
                    click.echo("no general-ability folder in the asset cache: general ability is skipped "
                               "(run `python reproduce/fetch_assets.py` to build it)")
                elif general_tasks == GENERAL_DEFAULT:  # the benchmarks the folder holds
                    general_tasks = ",".join(b for b in GENERAL_DEFAULT.split(",") if (Path(general_data) / b).is_dir())
                general_limit = general_limit or cfg.general_limit
        cfg = with_tasks(cfg, task_names, data_dir)  # --tasks checked against the directory
        cfg = _apply_settings(cfg, file_data, overrides, config_file)
        if show_settings:
            from seta.train.run_config import settings_help

            settings = cfg.settings()
            click.echo(settings_help({k: type(v) for k, v in settings.items()}, settings))
            return
        general = _load_general(general_data, general_tasks, general_limit) if general_tasks.strip() else None
        run(cfg, names, seed_list, out_dir, model_path, data_dir, resume or resume_force, not no_progress, general,
            force_resume=resume_force, tensorboard=tensorboard, verbose=verbose)
    except RunInterrupted as err:
        fail(interrupted_message(err), exit_code(err))
    except KeyboardInterrupt as err:  # before any method started
        fail(interrupted_message(RunInterrupted(None, None, None, type(err).__name__ == "Terminated")), 130)
    except Exception as err:  # noqa: BLE001  (the one boundary's mapping: failures.user_message; a bug re-raised)
        message = user_message(err, out_dir)
        if message is None:
            raise
        fail(message)


def _dense_only_methods(names: list[str], cfg, default_list: bool) -> list[str]:
    """osf on a 4-bit base: left out of the default method list (with a line saying so), a usage error
    when asked for by name (peft's OSF decomposes and rewrites dense weights)."""
    if not cfg.load_in_4bit or "osf" not in names:
        return names
    why = "peft's OSF takes an SVD of each target weight and merges into it, which a 4-bit (NF4) base cannot hold"
    if not default_list:
        raise click.UsageError(f"osf needs a dense base: {why}; drop osf from --methods or run without 4-bit")
    click.echo(f"osf left out: {why} (run it on a dense base)")
    return [n for n in names if n != "osf"]


def run(cfg, names, seeds, out_dir: Path, model_path, data_dir, resume: bool, progress: bool, general=None,
        force_resume: bool = False, tensorboard: bool = False, verbose: bool = False):
    """Every method for every seed into out_dir/<method>/seed<k>/, then the reports from every finished
    result in out_dir. The data and the folder's earlier results are checked before anything is written.

    Launched by torchrun, the process group comes from the environment (`seta.train.distributed`):
    every rank trains its shard of each batch, rank 0 alone evaluates and writes files and reports."""
    import torch

    from seta.train import distributed as dist

    dist.init_from_env()
    rank = dist.world()[0]
    echo = click.echo if rank == 0 else (lambda *a, **k: None)
    progress = progress and rank == 0

    from seta.data import build_tiny_tokenizer
    from seta.eval.report import BlockMap
    from seta.models import load_tokenizer
    from seta.train.fingerprint import data_fingerprint
    from seta.experiment.method import stream_sources, train_method
    from seta.inference.routed import general_ability as _general_ability, heldout_ppl as _heldout_ppl

    streams = {seed: _load_stream(cfg, data_dir, seed) for seed in seeds}  # a bad data file fails here
    info = results.run_info(cfg, model_path, streams[seeds[0]])
    data = {seed: data_fingerprint(tasks) for seed, tasks in streams.items()}
    results.check_compatible(out_dir, results.read_results(out_dir), info, data, {(m, s) for m in names for s in seeds})
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if not progress:  # --no-progress hides transformers' bars too ('Loading weights', 'Writing model shards')
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    tokenizer = load_tokenizer(model_path) if model_path else build_tiny_tokenizer()
    out_dir.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        train_cfg = replace(cfg.train, seed=seed)
        tasks = streams[seed]
        factory = _base_factory(replace(cfg, train=train_cfg), model_path, tokenizer, out_dir.parent / ".cache", progress)
        # the base's measurements of this seed from an earlier run into out_dir, when it had the same key
        base_key = results.base_key(info, data[seed], general)
        stored = results.read_base(out_dir, seed, base_key)
        base_scores = stored.get("base_scores")
        # BBH decoding cap: the tiny base rarely stops by itself; a preset may cap a real model's
        gen_cap = cfg.general_max_gen_toks if model_path else cfg.train.max_new_tokens
        seed_extra: dict = dict(stored.get("extra", {}))
        want_ppl = model_path is None and "heldout_ppl_base" not in seed_extra
        want_general = general is not None and "general_base" not in seed_extra
        if (want_ppl or want_general) and rank == 0:
            base = factory()
            if want_ppl:
                from seta.data import generic_corpus
                from seta.train.pretrain import perplexity

                seed_extra["heldout_ppl_base"] = perplexity(base, tokenizer, list(generic_corpus(seed).heldout))
            if want_general:
                echo(f"[seed {seed}] general ability of the base (lm-evaluation-harness) ...")
                seed_extra["general_base"] = _general_ability(base, tokenizer, general, cfg, progress, max_gen_toks=gen_cap)
            del base
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        if rank == 0 and (want_ppl or want_general):
            results.write_base(out_dir, seed, base_key, {"base_scores": base_scores, "extra": seed_extra})
        dist.barrier()  # rank 0 has cached the pre-trained tiny base before the others load it
        for name in names:
            run_dir = out_dir / name / f"seed{seed}"
            try:
                echo(f"[seed {seed}] {name} ...")
                t0 = time.perf_counter()
                sources = [stream_sources(cfg, data_dir, seed)] * len(tasks)
                res, strategy = train_method(name, factory, tokenizer, tasks, cfg, run_dir, seed=seed, sources=sources,
                                             resume=resume, force_resume=force_resume, base_scores=base_scores,
                                             progress=progress, tensorboard=tensorboard)
                if base_scores is None and not strategy.joint:
                    base_scores = res.base_scores  # computed (or, on resume, stored) once per seed
                    if rank == 0 and base_scores is not None:
                        results.write_base(out_dir, seed, base_key, {"base_scores": base_scores, "extra": seed_extra})
                if rank != 0:
                    continue  # general ability and the result: rank 0's
                if model_path is None:
                    res.extra["heldout_ppl_after"] = _heldout_ppl(strategy, tokenizer, seed)
                if general is not None:
                    res.extra["general_ability"] = _general_ability(strategy.model, tokenizer, general, cfg, progress,
                                                                    strategy, gen_cap)
                res.extra.update(seed_extra, base_scores=base_scores)
                if name == "seta":
                    bm = BlockMap.from_block_index(strategy.model.index, strategy.model.registry.owner_counts())
                    res.extra["block_map"] = {"grids": {n: list(g) for n, g in bm.grids.items()},
                                              "owner_counts": {n: [int(c) for c in v] for n, v in bm.owner_counts.items()}}
                    res.extra["growth_ratio"] = strategy.model.registry.growth_ratio()
                results.write_result(run_dir, res, seed, info, data[seed])
            except KeyboardInterrupt as err:
                raise RunInterrupted(run_dir, name, seed, type(err).__name__ == "Terminated") from None
            routing = "" if res.routing_acc is None else f"  routing {res.routing_acc:.1f}%"
            echo(f"  OP {res.OP:.1f}  BWT {res.BWT:.1f}{routing}  ({time.perf_counter() - t0:.0f} s)")
    if rank != 0:
        dist.shutdown()
        return
    dist.shutdown()
    found = results.read_results(out_dir)
    files, ability = results.write_reports(out_dir, cfg.name, found)
    earlier = sorted({r["method"] for r in found} - set(names))
    if earlier:
        click.echo(f"the report also holds earlier finished results in {out_dir}: {', '.join(earlier)}")
    summary = json.loads(files.summary_json.read_text())
    click.echo("\n" + results_table(summary, ability.get("heldout_ppl_after")))
    if ability.get("heldout_ppl_base") is not None:  # measured on the tiny preset's own generic text only
        click.echo(f"ppl after: held-out perplexity of the generic text (the base's: {ability['heldout_ppl_base']:.2f})")
    if verbose:
        click.echo("\n" + files.summary_md.read_text())
    click.echo("\n" + report_paths(out_dir, files.plots, "harness" in ability))


if __name__ == "__main__":
    main()
