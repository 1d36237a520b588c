"""The commands on a saved adapter: `seta generate` (routed generation, text or JSONL), `seta eval`
(scores, routing and the R row on a stream directory), `seta merge` (a dense HF checkpoint with one
task's expert folded in), `seta export` (one task's expert as a peft SHiRA adapter) and `seta info` (tasks, blocks, sharing, growth, routing statistics).
A bad adapter folder fails (its card is read) before any model is loaded."""

from __future__ import annotations

import json
from pathlib import Path

import click

from seta.commands.common import CONTEXT, _quiet_hf, user_errors
from seta.experiment.failures import check_dir_option, check_writable
from seta.inference.prompts import check_answer_budget, check_prompts, read_prompts_jsonl


def _adapter_arg(fn):
    return click.argument("adapter", type=click.Path(path_type=Path))(fn)


def _load_adapter(adapter: Path, base=None):
    from seta.inference.adapter import SetaAdapter
    from seta.inference.card import read_card

    read_card(adapter)  # a bad folder fails before any model is loaded
    _quiet_hf()
    return SetaAdapter.load(adapter, base=base)


# ---- generate -----------------------------------------------------------------------------------------
@click.command(context_settings=CONTEXT)
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
    check_prompts(prompts)
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
    if max_new_tokens is not None:
        check_answer_budget(ad, max_new_tokens, [r["prompt"] for r in rows])
    out = ad.generate([r["prompt"] for r in rows], task=task, max_new_tokens=max_new_tokens, batch_size=batch_size)
    for row, g in zip(rows, out):
        if as_jsonl or prompt_file is not None:
            click.echo(json.dumps({**row, "answer": g.text, "task": g.task, "probs": g.probs, "forced": g.forced}))
        else:
            click.echo(f"[{g.task or 'null'}] {g.text}")


# ---- eval ---------------------------------------------------------------------------------------------
@click.command("eval", context_settings=CONTEXT)
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
@click.command(context_settings=CONTEXT)
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
    check_writable(out)  # before the base is loaded
    _quiet_hf()
    path = merge_adapter(adapter, task, out)
    click.echo(f"wrote {path}: the base with the expert of {task} folded in; load it with "
               f"transformers.AutoModelForCausalLM.from_pretrained({str(path)!r})")


# ---- export -------------------------------------------------------------------------------------------
@click.command(context_settings=CONTEXT)
@_adapter_arg
@click.option("--task", required=True, help="The task whose expert is exported.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="New folder for the peft adapter.")
@user_errors
def export(adapter, task, out):
    """Write one task's expert of ADAPTER as a standard peft adapter (SHiRA: the task's blocks as sparse
    entries of each target weight), loadable with peft alone (ADAPTER unchanged)."""
    from seta.inference.card import read_card

    card = read_card(adapter)  # a bad folder, an unknown task or a 4-bit base fail before any model is loaded
    check_writable(out)
    _quiet_hf()
    from seta.inference.export import export_adapter

    path = export_adapter(adapter, task, out)
    click.echo(f"wrote {path}: the expert of {task} as a peft SHiRA adapter; load it with "
               f"peft.PeftModel.from_pretrained(base, {str(path)!r}) on the base {card['base'].get('model')}")


# ---- info ---------------------------------------------------------------------------------------------
@click.command(context_settings=CONTEXT)
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
    if r is None:
        click.echo(f"routing: none ({d['method']} has no gate: its blocks are deployed together)")
        return
    line = f"routing: {r['mode']}{' (k=' + str(r['soft_k']) + ')' if r['mode'] == 'soft' else ''}, null expert {'on' if r['null_expert'] else 'off'}"
    if r.get("train_routing_acc") is not None:
        line += f"; accuracy in training {r['train_routing_acc']:.1f}% ({r.get('train_null_routed')} routed to null)"
    click.echo(line)
