"""Sweep one SETA setting and plot OP/BWT against it (the stability-plasticity trade-off).

    python reproduce/sweep.py                                   # λ (anchor_lambda) on a validation stream
    python reproduce/sweep.py --param beta --values 0,0.1,0.5,1
    python reproduce/sweep.py --param anchor_lambda --values 1,10 --seeds 0,1,2 --references seqft-sparse,independent

Each value is a full run_all run of one method with that SetaOwnConfig or SparseConfig field changed, written to
OUT/<param>=<value>/; the reference methods run once with the preset's settings (OUT/references/).
OUT/sweep.json, OUT/sweep.md and OUT/sweep.png collect OP and BWT (mean ± std over seeds).

Choose settings on a stream you do not report: the default seed 1000 generates a synthetic stream
(and a base) distinct from the seeds 0, 1, 2 that the README's tables use.
"""

from __future__ import annotations

import json
import math
from dataclasses import fields, replace
from pathlib import Path

import click

from seta.experiment.command import run
from seta.experiment.failures import check_writable, error_boundary
from seta.experiment.presets import PRESETS, QUICK
from seta.train.strategies import STRATEGIES, SetaOwnConfig, SparseConfig

# field -> the preset section it lives in (the names are unique across the two)
SECTION = {f.name: section for section, cls in (("sparse", SparseConfig), ("seta", SetaOwnConfig)) for f in fields(cls)
           if f.type in ("float", "int", "str") and f.name not in ("block_size", "target_modules")}
CHOICES = ["allocation", "routing"]  # named settings: --values lists names
NUMERIC = [name for name in SECTION if name not in CHOICES]


def _floats(text: str, option: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"must be comma-separated numbers, got {text!r}", param_hint=option)
    if not values:
        raise click.BadParameter("give at least one value", param_hint=option)
    return values


def _summary(out_dir: Path, method: str) -> dict:
    return json.loads((out_dir / "summary.json").read_text())["methods"][method]


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--param", type=click.Choice(NUMERIC + CHOICES), default="anchor_lambda", show_default=True,
              help="SetaOwnConfig or SparseConfig field to vary.")
@click.option("--values", default="0.1,0.3,1,3,10,30", show_default=True, help="Comma-separated values.")
@click.option("--method", default="seta", show_default=True, help="Method whose setting is swept.")
@click.option("--references", default="seqft-sparse,independent", show_default=True,
              help="Methods run once with the preset's settings, drawn as reference lines ('' for none).")
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default="tiny", show_default=True)
@click.option("--seeds", default="1000", show_default=True, help="Comma-separated seeds (1000: a validation stream).")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Output directory (default results/sweep-<param>).")
@click.option("--model", "model_path", type=click.Path(exists=True), default=None, help="Local HF model (paper presets).")
@click.option("--data-dir", type=click.Path(exists=True, file_okay=False), default=None, help="TRACE-format data directory.")
@click.option("--resume", is_flag=True, help="Continue unfinished runs from their last finished task.")
@click.option("--quick", is_flag=True, help="Smoke sizes of the tiny preset (one epoch, few examples).")
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
@error_boundary
def main(param, values, method, references, preset, seeds, out, model_path, data_dir, resume, quick, no_progress):
    """Run METHOD once per value of PARAM and plot OP and BWT against it."""
    if param in CHOICES:
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not vals:
            raise click.BadParameter("give at least one value", param_hint="--values")
    else:
        vals = _floats(values, "--values")
    seed_list = [int(s) for s in _floats(seeds, "--seeds")]
    refs = [m.strip() for m in references.split(",") if m.strip()]
    unknown = [m for m in [method, *refs] if m not in STRATEGIES]
    if unknown:
        raise click.BadParameter(f"unknown method(s) {unknown}; known: {', '.join(STRATEGIES)}")
    cfg = PRESETS[preset]
    if quick and cfg.needs_model_path:
        raise click.UsageError("--quick runs the tiny preset only")
    cfg = QUICK if quick else cfg
    if cfg.needs_model_path and (model_path is None or data_dir is None):
        raise click.UsageError(f"--preset {preset} needs --model PATH and --data-dir PATH")
    out_dir = Path(out or f"results/sweep-{param}")
    check_writable(out_dir)
    cast = int if param in ("probe_batches", "fisher_batches", "soft_k") else str if param in CHOICES else float
    rows = []
    for v in vals:
        try:
            section = SECTION[param]
            point = replace(cfg, **{section: replace(getattr(cfg, section), **{param: cast(v)})})
        except ValueError as err:
            raise click.BadParameter(str(err), param_hint="--values")
        run_dir = out_dir / f"{param}={v if isinstance(v, str) else format(v, 'g')}"
        run(point, [method], seed_list, run_dir, model_path, data_dir, resume, not no_progress)
        rows.append({"value": v, **{k: _summary(run_dir, method).get(k) for k in KEYS}})
    ref_rows = {}
    if refs:
        run(cfg, refs, seed_list, out_dir / "references", model_path, data_dir, resume, not no_progress)
        ref_rows = {m: {k: _summary(out_dir / "references", m).get(k) for k in ("OP", "BWT", "LA")} for m in refs}
    write_sweep(out_dir, param, method, seed_list, rows, ref_rows)


KEYS = ("OP", "OP_std", "BWT", "BWT_std", "LA", "LA_std")


def write_sweep(out_dir: Path, param: str, method: str, seeds, rows: list[dict], refs: dict) -> None:
    """sweep.json, sweep.md and sweep.png of one sweep."""
    from seta.eval.plots import plot_sweep

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "sweep.json").write_text(json.dumps(
        {"param": param, "method": method, "seeds": seeds, "points": rows, "references": refs}, indent=1))

    def pm(m, s):
        return "—" if m is None else f"{m:.1f}" + ("" if s is None or math.isnan(s) else f" ± {s:.1f}")

    lines = [f"# Sweep of `{param}` for `{method}` (seeds {', '.join(map(str, seeds))})", "",
             f"| {param} | OP | BWT | LA |", "|---:|---:|---:|---:|"]
    lines += [f"| {r['value'] if isinstance(r['value'], str) else format(r['value'], 'g')} | "
              f"{pm(r['OP'], r['OP_std'])} | {pm(r['BWT'], r['BWT_std'])} | {pm(r.get('LA'), r.get('LA_std'))} |"
              for r in rows]
    lines += [f"| {name} (reference) | {pm(r['OP'], None)} | {pm(r['BWT'], None)} | {pm(r.get('LA'), None)} |"
              for name, r in refs.items()]
    (out_dir / "sweep.md").write_text("\n".join(lines) + "\n")
    plot_sweep(param, [r["value"] for r in rows], [r["OP"] for r in rows], [r["OP_std"] for r in rows],
               [r["BWT"] for r in rows], [r["BWT_std"] for r in rows], out_dir / "sweep.png",
               references={m: (r["OP"], r["BWT"]) for m, r in refs.items()})
    click.echo("\n" + (out_dir / "sweep.md").read_text())
    click.echo(f"Sweep report in {out_dir}/: sweep.md (this table), sweep.json (the figures), sweep.png (OP and BWT "
               f"against {param}); each point's own report in {out_dir}/{param}=<value>/")


if __name__ == "__main__":
    main()
