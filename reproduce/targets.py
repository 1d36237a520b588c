"""The real-model table's targets (issue "Real evidence"), each met or not, from a `seta run --out` folder.

    python reproduce/targets.py docs/results/smollm2

Every figure is computed per seed from OUT/<method>/seed<k>/result.json and general_ability.json, then given
as mean ± sample std over the seeds. A target is "met" when its mean meets it, "not measured" when a method
it needs has not run. Nothing here chooses a setting: these are the reported seeds.

  1. unprotected sparse tuning learns: seqft-sparse's mean over tasks of LA_i - base_i >= 15;
  2. SETA's OP >= the OP of every baseline that runs without the task id (not SETA or its ablations, not
     routed by the true task id, not trained jointly);
  3. SETA's BWT >= -2;
  4. SETA's LA >= seqft-sparse's LA - 3;
  5. SETA's routing accuracy >= 90%;
  6. SETA's MMLU and PIQA after the stream within 1 point of the base's, while seq-lora loses more.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import click

from seta.core.metrics import backward_transfer, learning_accuracy, overall_performance, plasticity_gain
from seta.experiment.failures import error_boundary

METRICS = {"OP": overall_performance, "BWT": backward_transfer, "LA": learning_accuracy}


def _mean_std(xs: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None)


def fmt(xs: list[float]) -> str:
    mean, std = _mean_std(xs)
    return f"{mean:.1f}" if std is None else f"{mean:.1f} ± {std:.1f}"


def _metric(fn, R) -> float | None:
    """fn(R), or None where R lacks the entries it needs (MTL has only its final row: no BWT, no LA)."""
    try:
        return fn(R)
    except ValueError:
        return None


def per_seed(found: list[dict]) -> dict[str, dict[int, dict]]:
    """method -> seed -> OP, BWT, LA, gain (mean over tasks of LA_i - base_i), routing (None if unrouted)."""
    out: dict[str, dict[int, dict]] = {}
    for r in found:
        base = r.get("base_scores") or r.get("extra", {}).get("base_scores")
        gain = None if base is None else _metric(lambda R, b=base: plasticity_gain(R, b), r["R"])
        out.setdefault(r["method"], {})[int(r["seed"])] = {**{k: _metric(fn, r["R"]) for k, fn in METRICS.items()},
                                                           "gain": gain, "routing": r.get("routing_acc")}
    return out


def without_task_id(names) -> list[str]:
    """The baselines of target 2: methods that are not SETA (or an ablation of it), are not routed by the
    true task id and are not trained on every task at once."""
    from seta.train.strategies import strategy_class
    from seta.train.strategies.seta import Seta

    keep = []
    for name in names:
        cls = strategy_class(name)
        if not issubclass(cls, Seta) and not cls.uses_task_id_at_inference and not cls.joint:
            keep.append(name)
    return keep


def _values(runs: dict[int, dict] | None, key: str) -> list[float] | None:
    if not runs:
        return None
    xs = [v[key] for _, v in sorted(runs.items())]
    return None if any(x is None for x in xs) else xs


def general_drops(ability: dict, method: str, task: str) -> list[float] | None:
    """Per seed: the method's score on `task` after the stream minus the base's (None if not measured)."""
    harness = ability.get("harness") or {}
    if task not in harness.get("tasks", []) or method not in harness.get("after", {}):
        return None
    base = [b[task]["score"] for b in harness["base"]]
    after = [a[task]["score"] for a in harness["after"][method]]
    if len(base) != len(after):
        return None
    return [a - b for a, b in zip(after, base)]


def check(out_dir: Path) -> tuple[list[int], list[tuple[str, str, str]]]:
    """The seeds found and the (target, measured, verdict) rows."""
    from seta.experiment.results import read_results

    found = read_results(out_dir)
    if not found:
        raise click.ClickException(f"{out_dir}: no finished run (no <method>/seed<k>/result.json)")
    runs = per_seed(found)
    path = out_dir / "general_ability.json"
    ability = json.loads(path.read_text()) if path.is_file() else {}
    rows = []

    def row(target: str, xs: list[float] | None, ok) -> None:
        if xs is None:
            rows.append((target, "—", "not measured"))
        else:
            rows.append((target, fmt(xs), "met" if ok(statistics.fmean(xs)) else "**missed**"))

    seta, sparse = runs.get("seta"), runs.get("seqft-sparse")
    row("seqft-sparse LA − base ≥ 15", _values(sparse, "gain"), lambda m: m >= 15)
    seta_op = _values(seta, "OP")
    others = without_task_id(runs)
    if seta_op is None or not others:
        rows.append(("SETA OP ≥ every baseline without the task id", "—", "not measured"))
    else:
        best = max(others, key=lambda n: statistics.fmean(_values(runs[n], "OP")))
        best_op = _values(runs[best], "OP")
        verdict = "met" if statistics.fmean(seta_op) >= statistics.fmean(best_op) else "**missed**"
        rows.append((f"SETA OP ≥ every baseline without the task id (best: {best}, {fmt(best_op)}; "
                     f"{len(others)} compared)", fmt(seta_op), verdict))
    row("SETA BWT ≥ −2", _values(seta, "BWT"), lambda m: m >= -2)
    seta_la, sparse_la = _values(seta, "LA"), _values(sparse, "LA")
    if seta_la is None or sparse_la is None:
        rows.append(("SETA LA ≥ seqft-sparse LA − 3", "—", "not measured"))
    else:
        ok = statistics.fmean(seta_la) >= statistics.fmean(sparse_la) - 3
        rows.append((f"SETA LA ≥ seqft-sparse LA − 3 (seqft-sparse: {fmt(sparse_la)})", fmt(seta_la),
                     "met" if ok else "**missed**"))
    row("SETA routing accuracy ≥ 90%", _values(seta, "routing"), lambda m: m >= 90)
    for task in ("mmlu", "piqa"):
        drop, lora = general_drops(ability, "seta", task), general_drops(ability, "seq-lora", task)
        target = f"SETA {task.upper()} after − base within ±1, seq-lora loses more"
        if drop is None or lora is None:
            rows.append((target, "—", "not measured"))
            continue
        ok = abs(statistics.fmean(drop)) <= 1 and statistics.fmean(lora) < statistics.fmean(drop)
        rows.append((f"{target} (seq-lora: {fmt(lora)})", fmt(drop), "met" if ok else "**missed**"))
    return sorted({int(r["seed"]) for r in found}), rows


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("out", type=click.Path(exists=True, file_okay=False, path_type=Path))
@error_boundary
def main(out):
    """Print the targets of the real-model table in OUT (a `seta run --out` folder) as a markdown table."""
    seeds, rows = check(out)
    click.echo(f"Seeds: {', '.join(map(str, seeds))}; mean ± sample std over seeds.\n")
    click.echo("| Target | Measured | |\n|---|---:|---|")
    for target, measured, verdict in rows:
        click.echo(f"| {target} | {measured} | {verdict} |")


if __name__ == "__main__":
    main()
