"""Collect the validation runs of docs/validation.md into one table (and the learning curve).

    python reproduce/validation_table.py docs/results/validation/steps*          # markdown table
    python reproduce/validation_table.py docs/results/validation/steps* --curve docs/img/validation-steps.png

Each argument is the --out folder of one `seta run` (its summary.json). For every method of every folder the
table gives OP, BWT and LA, and the plasticity gain of the sizing rule: gain = mean over tasks of
(LA_i - base_i), the score right after training on task i minus the base model's score on task i
(summary.json's base_scores, mean over its seeds). The row's setting is what differs between the folders
(steps per task = ceil(train.max_train_examples / batch) x epochs, lr, lambda, block side, budget).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import click

from seta.core.metrics import plasticity_gain
from seta.experiment.failures import error_boundary

SETTINGS = (("steps", None), ("lr", ("train", "lr")), ("lambda", ("seta", "anchor_lambda")),
            ("b", ("sparse", "block_size")), ("rho", ("sparse", "ratio")))


def steps_per_task(config: dict) -> int | None:
    """Optimiser steps of one task: ceil(N / (batch * grad_accum)) * epochs (None when N is not capped)."""
    train = config["train"]
    n = train.get("max_train_examples")
    if n is None:
        return None
    return math.ceil(math.ceil(n / train["batch_size"]) / train["grad_accum"]) * train["epochs"][0]


def setting(config: dict, name: str):
    if name == "steps":
        return steps_per_task(config)
    section, key = dict(SETTINGS)[name]
    return config[section][key]


def gains(summary: dict) -> dict[str, float]:
    """method -> mean over tasks of (R[i][i] - base_i), from the seed-mean R and base scores."""
    base_rows = summary.get("base_scores")
    if not base_rows:
        raise click.ClickException("summary.json has no base_scores: rerun with a version that records them")
    n = len(summary["tasks"])
    base = [sum(row[i] for row in base_rows) / len(base_rows) for i in range(n)]
    out = {}
    for name, m in summary["methods"].items():
        try:
            out[name] = plasticity_gain(m["R"], base)
        except ValueError:  # a method without a just-trained row (MTL) has no gain
            continue
    return out


def _fmt(x, digits=1):
    return "—" if x is None else f"{x:.{digits}f}"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--curve", type=click.Path(dir_okay=False), default=None,
              help="Also plot each method's gain against the steps per task to this PNG.")
@error_boundary
def main(runs, curve):
    """Print OP, BWT, LA and LA - base of every method in each RUN folder (a `seta run --out`)."""
    rows = []
    for run in runs:
        path = Path(run) / "summary.json"
        if not path.is_file():
            raise click.ClickException(f"{path}: not found (the run has not finished a method yet)")
        summary = json.loads(path.read_text())
        config = summary["config"]
        g = gains(summary)
        for name, m in summary["methods"].items():
            rows.append({"run": Path(run).name, **{s: setting(config, s) for s, _ in SETTINGS}, "method": name,
                         "OP": m["OP"], "BWT": m["BWT"], "LA": m["LA"], "gain": g.get(name)})
    varying = [s for s, _ in SETTINGS if len({r[s] for r in rows}) > 1] or ["steps"]
    head = ["run", *varying, "method", "OP", "BWT", "LA", "LA − base"]
    click.echo("| " + " | ".join(head) + " |")
    click.echo("|" + "---|" * len(head))
    for r in rows:
        cells = [r["run"], *(str(r[s]) for s in varying), r["method"], _fmt(r["OP"]), _fmt(r["BWT"]), _fmt(r["LA"]),
                 _fmt(r["gain"])]
        click.echo("| " + " | ".join(cells) + " |")
    if curve:
        _plot_curve(rows, Path(curve))
        click.echo(f"curve: {curve}")


def _plot_curve(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for method in dict.fromkeys(r["method"] for r in rows):
        pts = sorted((r["steps"], r["gain"]) for r in rows if r["method"] == method and r["gain"] is not None
                     and r["steps"] is not None)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=method)
    ax.axhline(15, color="grey", linestyle="--", linewidth=1, label="rule: gain ≥ 15")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("optimiser steps per task (batch 4)")
    ax.set_ylabel("mean LA − base (points)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
