"""Where SETA's scores part from unprotected tuning's, task by task, from a `seta run --out` folder.

    python reproduce/diagnose.py docs/results/smollm2 [--method seta] [--oracle seta-oracle] [--reference seqft-sparse]

Three runs of the same stream with the same block budget are set side by side, per task j (mean over the
seeds that all of them finished):
  reference  R[j][j] of unprotected sparse tuning (no anchoring, no gate);
  oracle     R[j][j] of SETA trained as usual but evaluated with task j's own expert (seta-oracle);
  routed     R[j][j] of SETA as it runs: the gate picks the expert, the null expert may take the item;
  routing right after training j, and after the last task: % of j's test items routed to j's expert
  and % taken by the null expert (metrics.jsonl; runs older than the null share show —);
  final LM loss of the last step on j, SETA and reference (did training on j go as well?).
The differences split exactly (LA = mean_j R[j][j], OP = mean_j R[n][j]):
  LA_routed − LA_ref = (LA_oracle − LA_ref)    [training: allocation, anchoring]
                     + (LA_routed − LA_oracle) [routing at the just-trained evaluation]
and the same for OP with the final row. Nothing here chooses a setting.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import click

from seta.core.metrics import learning_accuracy, overall_performance
from seta.experiment.failures import error_boundary


def _runs(found: list[dict], method: str) -> dict[int, dict]:
    """seed -> {"result": result.json, "records": the task records of metrics.jsonl by task index}."""
    from seta.train.metrics import read_metrics

    runs = {}
    for r in found:
        if r["method"] != method:
            continue
        folder = Path(r["path"]).parent
        records = read_metrics(folder) if (folder / "metrics.jsonl").is_file() else []
        runs[int(r["seed"])] = {"result": r, "records": {x["task"]: x for x in records if x.get("kind") == "task"}}
    return runs


def _mean(xs: list) -> float | None:
    return None if not xs or any(x is None for x in xs) else statistics.fmean(xs)


def _fmt(x, digits: int = 1) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _routing(records: dict, stage: int, task: str, key: str):
    return ((records.get(stage) or {}).get(key) or {}).get(task)


def _loss(result: dict, j: int):
    per = (result.get("extra") or {}).get("per_task") or []
    return per[j].get("final_lm_loss") if j < len(per) else None


def diagnose(out_dir: Path, method: str, oracle: str, reference: str) -> str:
    """The markdown report (see the module docstring)."""
    from seta.experiment.results import read_results

    found = read_results(out_dir)  # every result.json once
    routed, ref, orc = _runs(found, method), _runs(found, reference), _runs(found, oracle)
    for name, runs in ((method, routed), (reference, ref)):
        if not runs:
            raise click.ClickException(f"{out_dir}: no finished run of {name} (no {name}/seed<k>/result.json)")
    seeds = sorted(set(routed) & set(ref) & (set(orc) if orc else set(routed)))
    if not seeds:
        raise click.ClickException(f"{out_dir}: {method} and {reference} share no finished seed")
    tasks = routed[seeds[0]]["result"]["tasks"]
    n, last = len(tasks), len(tasks) - 1

    def diag(runs, j):
        return _mean([runs[s]["result"]["R"][j][j] for s in seeds]) if runs else None

    def cell(stage, task, key):
        return _mean([_routing(routed[s]["records"], stage, task, key) for s in seeds])

    lines = [f"Seeds: {', '.join(map(str, seeds))} (mean over them). {method} (routed), {oracle} (true task's "
             f"expert), {reference} (reference); routing = % to the task's own expert / % to the null expert.",
             "",
             f"| Task | {reference} R[j][j] | {oracle} R[j][j] | {method} R[j][j] | routing after j | "
             f"routing at the end | LM loss {method} / {reference} |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for j, task in enumerate(tasks):
        just = f"{_fmt(cell(j, task, 'gate_acc_per_task'), 0)} / {_fmt(cell(j, task, 'null_per_task'), 0)}"
        end = f"{_fmt(cell(last, task, 'gate_acc_per_task'), 0)} / {_fmt(cell(last, task, 'null_per_task'), 0)}"
        loss = (f"{_fmt(_mean([_loss(routed[s]['result'], j) for s in seeds]), 3)} / "
                f"{_fmt(_mean([_loss(ref[s]['result'], j) for s in seeds]), 3)}")
        lines.append(f"| {task} | {_fmt(diag(ref, j))} | {_fmt(diag(orc, j))} | {_fmt(diag(routed, j))} | {just} | "
                     f"{end} | {loss} |")

    def metric(runs, fn):
        return _mean([fn(runs[s]["result"]["R"]) for s in seeds]) if runs else None

    lines.append("")
    for label, fn in (("LA", learning_accuracy), ("OP", overall_performance)):
        r, o, m = metric(ref, fn), metric(orc, fn), metric(routed, fn)
        if o is None:
            lines.append(f"- {label}: {method} {m:.1f} − {reference} {r:.1f} = {m - r:+.1f} ({oracle} not run: "
                         "training and routing cannot be told apart)")
        else:
            lines.append(f"- {label}: {method} {m:.1f} − {reference} {r:.1f} = {m - r:+.1f} = {o - r:+.1f} from training "
                         f"({oracle} − {reference}) {m - o:+.1f} from routing ({method} − {oracle})")
    return "\n".join(lines) + "\n"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("out", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--method", default="seta", show_default=True, help="The routed method.")
@click.option("--oracle", default="seta-oracle", show_default=True,
              help="The same method evaluated with the true task's expert.")
@click.option("--reference", default="seqft-sparse", show_default=True, help="Unprotected tuning, same budget.")
@click.option("--save", type=click.Path(dir_okay=False, path_type=Path), help="Also write the report here.")
@error_boundary
def main(out, method, oracle, reference, save):
    """Print, per task, the just-trained scores of the reference, the oracle-routed and the routed method,
    the routing after each task, and the split of the LA and OP differences into training and routing."""
    text = diagnose(out, method, oracle, reference)
    click.echo(text, nl=False)
    if save is not None:
        save.write_text(text)


if __name__ == "__main__":
    main()
