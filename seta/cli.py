"""The `seta` command line (click). Each sub-command calls the package; none imports reproduce/.

    seta run       every method over a stream, then the reports (= python reproduce/run_all.py)
    seta train     one method over a stream, or `--from ADAPTER`: add tasks to a saved adapter
    seta plan      the memory plan of a preset (= seta run --dry-run)
    seta generate  route prompts through a saved adapter's gate and generate (text or JSONL)
    seta eval      score a saved adapter on a stream directory: scores, routing and the R row
    seta merge     a dense HF checkpoint: the base with one task's expert folded in
    seta info      what a saved adapter holds: tasks, blocks, sharing, growth, routing statistics

Bad input ends with one line (`Error: ...`) and a non-zero exit. torch is imported only after the
arguments have been checked.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import click

from seta import __version__
from seta.experiment.choices import PAPER_PRESETS, PRESET_NAMES, QUICK_PRESETS
from seta.experiment.command import main as run_command
from seta.experiment.failures import check_dir_option, check_writable
from seta.experiment.options import settings_options
from seta.inference.prompts import read_prompts_jsonl  # noqa: F401  (was defined here)

CONTEXT = {"help_option_names": ["-h", "--help"]}


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="seta")
def main() -> None:
    """SETA: Split-on-Share mixture of sparse experts for continual learning of LLMs."""


main.add_command(run_command, "run")


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


def _adapter_arg(fn):
    return click.argument("adapter", type=click.Path(path_type=Path))(fn)


def _quiet_hf() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _load_adapter(adapter: Path, base=None):
    from seta.inference.adapter import SetaAdapter
    from seta.inference.card import read_card

    read_card(adapter)  # a bad folder fails before any model is loaded
    _quiet_hf()
    return SetaAdapter.load(adapter, base=base)


# ---- plan ---------------------------------------------------------------------------------------------
@main.command(context_settings=CONTEXT)
@click.option("--preset", type=click.Choice(sorted(PRESET_NAMES)), default="tiny", show_default=True)
@click.option("--quick", is_flag=True, help="The smoke-run sizes of the preset (tiny, smollm2).")
def plan(preset, quick):
    """Print the memory plan of a preset (what `seta run --dry-run` prints)."""
    if quick and preset not in QUICK_PRESETS:
        raise click.UsageError(f"--quick exists for {' and '.join(QUICK_PRESETS)} only, not --preset {preset}")
    from seta.experiment.command import dry_run
    from seta.experiment.presets import PRESETS, QUICKS

    dry_run(QUICKS[preset] if quick else PRESETS[preset])


# ---- train --------------------------------------------------------------------------------------------
@main.command(context_settings=CONTEXT)
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
    click.echo(f"  OP {res.OP:.1f}  BWT {res.BWT:.1f}  routing {res.routing_acc}  last row of R {last}")
    click.echo(f"  adapter: {out / 'adapter'}")


# ---- generate -----------------------------------------------------------------------------------------
@main.command(context_settings=CONTEXT)
@_adapter_arg
@click.argument("prompts", nargs=-1)
@click.option("--file", "prompt_file", type=click.Path(allow_dash=True), default=None,
              help='JSONL of {"prompt": ...} (other keys are passed through); "-" reads stdin. Output: JSONL.')
@click.option("--task", default=None, help="Force this task's expert instead of routing through the gate.")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=None,
              help="Answer budget (default: the routed task's, from its training answers).")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--jsonl", "as_jsonl", is_flag=True, help="Print JSONL (prompt, answer, task, probs) for PROMPTs too.")
@click.option("--base", default=None, help="Load onto this base instead of the one the adapter names (checked).")
@user_errors
def generate(adapter, prompts, prompt_file, task, max_new_tokens, batch_size, as_jsonl, base):
    """Answer PROMPTs (or --file) with ADAPTER, each routed through the gate: prints the routed task
    ([null] = the base model alone) and the answer."""
    rows = [{"prompt": p} for p in prompts]
    if prompt_file is not None:
        if prompt_file != "-" and not Path(prompt_file).is_file():
            raise click.BadParameter(f"{prompt_file} does not exist", param_hint="--file")
        rows += read_prompts_jsonl(prompt_file)
    if not rows:
        raise click.UsageError("give at least one PROMPT or --file prompts.jsonl")
    ad = _load_adapter(adapter, base)
    if task is not None:
        ad.task_index(task)
    out = ad.generate([r["prompt"] for r in rows], task=task, max_new_tokens=max_new_tokens, batch_size=batch_size)
    for row, g in zip(rows, out):
        if as_jsonl or prompt_file is not None:
            click.echo(json.dumps({**row, "answer": g.text, "task": g.task, "probs": g.probs, "forced": g.forced}))
        else:
            click.echo(f"[{g.task or 'null'}] {g.text}")


# ---- eval ---------------------------------------------------------------------------------------------
@main.command("eval", context_settings=CONTEXT)
@_adapter_arg
@click.option("--data-dir", type=click.Path(), default=None,
              help="Stream directory whose tasks' test splits are scored (default: the adapter's own stream).")
@click.option("--tasks", "task_names", default=None, help="Comma-separated tasks of --data-dir (default: all).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--base", default=None, help="Load onto this base instead of the one the adapter names (checked).")
@user_errors
def evaluate(adapter, data_dir, task_names, as_json, base):
    """Score ADAPTER on a stream's test splits, routed as at inference: scores, routing and the R row."""
    from seta.inference.card import read_card

    card = read_card(adapter)
    if data_dir is not None:
        check_dir_option(data_dir, "--data-dir", "data directory")
    names = [t.strip() for t in task_names.split(",") if t.strip()] if task_names else None
    from seta.experiment.method import load_tasks

    if data_dir is not None:
        from seta.data import load_trace, stream_task_names

        tasks = list(load_trace(data_dir, tasks=names or stream_task_names(data_dir)))
    else:
        wanted = names or [t["name"] for t in card["tasks"]]
        known = {t["name"]: t for t in card["tasks"]}
        bad = [n for n in wanted if n not in known]
        if bad:
            raise click.BadParameter(f"unknown task(s) {bad}; the adapter has: {', '.join(known)}", param_hint="--tasks")
        tasks = [task for n in wanted for task in load_tasks(known[n]["source"], [n])]
    ad = _load_adapter(adapter, base)
    res = ad.evaluate(tasks)
    if as_json:
        click.echo(json.dumps(res, indent=1))
        return
    metric = {t.name: t.metric for t in tasks}
    click.echo(f"{'task':<16} {'metric':<10} {'score':>7}  routed to")
    for name, value in res["scores"].items():
        routed = ", ".join(f"{k} {v}" for k, v in sorted(res["routed"][name].items(), key=lambda kv: -kv[1]))
        click.echo(f"{name:<16} {metric[name]:<10} {value:7.1f}  {routed}")
    acc = res["routing_acc"]
    click.echo(f"routing accuracy: {'n/a' if acc is None else f'{acc:.1f}%'}")
    click.echo("R row (adapter's task order): " + json.dumps([None if v is None else round(v, 2) for v in res["R_row"]]))


# ---- merge --------------------------------------------------------------------------------------------
@main.command(context_settings=CONTEXT)
@_adapter_arg
@click.option("--task", required=True, help="The task whose expert is folded into the base.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="New folder for the dense checkpoint.")
@user_errors
def merge(adapter, task, out):
    """Write a dense HF checkpoint of ADAPTER's base with one task's expert folded in (ADAPTER unchanged)."""
    from seta.inference.adapter import merge_adapter
    from seta.inference.card import read_card

    card = read_card(adapter)
    names = [t["name"] for t in card["tasks"]]
    if task not in names:
        raise click.BadParameter(f"unknown task {task!r}; the adapter has: {', '.join(names)}", param_hint="--task")
    _quiet_hf()
    path = merge_adapter(adapter, task, out)
    click.echo(f"wrote {path}: the base with the expert of {task} folded in; load it with "
               f"transformers.AutoModelForCausalLM.from_pretrained({str(path)!r})")


# ---- info ---------------------------------------------------------------------------------------------
@main.command(context_settings=CONTEXT)
@_adapter_arg
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@user_errors
def info(adapter, as_json):
    """What ADAPTER holds: base, tasks, blocks per task (unique/shared), growth, routing statistics."""
    from seta.inference.card import read_card

    read_card(adapter)  # a bad folder fails before torch is imported
    from seta.inference.adapter import adapter_info

    d = adapter_info(adapter)
    if as_json:
        click.echo(json.dumps(d, indent=1, default=str))
        return
    b = d["base"]
    click.echo(f"{d['adapter']}: {d['method']} (preset {d['preset']}), {len(d['tasks'])} tasks")
    click.echo(f"base: {b['model']} ({b.get('model_type')}, {b['dtype']}{', 4-bit' if b.get('load_in_4bit') else ''}; "
               f"config {b['config_hash']}, weights {b['weights_hash']})")
    w = max([16, *(len(r["task"]) for r in d["tasks"])])  # the task column fits the longest name
    click.echo(f"{'task':<{w}} {'blocks':>6} {'unique':>6} {'shared':>6} {'features':>8} {'null tau':>9}")
    for r in d["tasks"]:
        tau = "-" if r["null_threshold"] is None else f"{r['null_threshold']:.2f}"
        click.echo(f"{r['task']:<{w}} {r['blocks']:>6} {r['unique']:>6} {r['shared']:>6} {r['features_seen'] or 0:>8} {tau:>9}")
    click.echo(f"blocks: {d['blocks_allocated']} allocated of {d['blocks_total']} (b={d['block_size']}), "
               f"{d['blocks_shared']} shared by 2+ tasks; growth |∪S|/Σ|S| = {d['growth_ratio']:.3f}")
    r = d["routing"]
    line = f"routing: {r['mode']}{' (k=' + str(r['soft_k']) + ')' if r['mode'] == 'soft' else ''}, null expert {'on' if r['null_expert'] else 'off'}"
    if r.get("train_routing_acc") is not None:
        line += f"; accuracy in training {r['train_routing_acc']:.1f}% ({r.get('train_null_routed')} routed to null)"
    click.echo(line)


if __name__ == "__main__":  # pragma: no cover
    main()
