"""Mean ± sample std over seeds of the SmolLM2 runs, from their R matrices (OP, BWT, LA as seta.core.metrics
computes them) and BBH after each method's stream.

    python docs/runs/smollm2/merge_seeds.py docs/runs/smollm2/summary.json docs/runs/smollm2/seed1 docs/runs/smollm2/seed2 > docs/runs/smollm2/seeds.json

The first argument is a summary.json (seed 0 here: its per-run files did not survive a machine change);
the others are run_all output folders (OUT/<method>/seed<k>/result.json). Only methods with every seed
get a mean; the others are listed with the seeds they have. `--markdown` (first argument) prints the
README's table of the same figures instead of the JSON.
"""

import json
import statistics
import sys
from pathlib import Path

from seta.core.metrics import backward_transfer, learning_accuracy, overall_performance


def per_seed(summary_path, outs):
    runs = {}  # method -> {seed: {"R", "bbh", "routing"}}
    s = json.loads(Path(summary_path).read_text())
    ga = json.loads((Path(summary_path).parent / "general_ability.json").read_text())["harness"]["after"]
    for m, v in s["methods"].items():
        for i, seed in enumerate(s["seeds"]):
            bbh = ga.get(m, [None])[i]
            R = v["R"] if len(s["seeds"]) == 1 else v["R"][i]  # one seed: the matrix itself
            runs.setdefault(m, {})[seed] = {"R": R, "bbh": bbh and bbh["bbh"]["score"],
                                            "routing": v["routing_acc"] if len(s["seeds"]) == 1 else None}
    for out in outs:
        for f in sorted(Path(out).glob("*/seed*/result.json")):
            r = json.loads(f.read_text())
            bbh = r["extra"].get("general_ability")
            runs.setdefault(r["method"], {})[int(r["seed"])] = {"R": r["R"], "bbh": bbh and bbh["bbh"]["score"],
                                                                "routing": r.get("routing_acc")}
    return runs


def stats(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else None,
            "values": values}


def _minus(text):
    return text.replace("-", "−")  # the typographic minus of the README's tables


def fmt(st, signed=False):
    if st is None:
        return "—"
    m = _minus(f"{st['mean']:+.1f}" if signed else f"{st['mean']:.1f}")
    return m if st["std"] is None else f"{m} ± {st['std']:.1f}"


def markdown(out):
    """The table: one row per method, mean ± sample std over its seeds, then OP/BWT/LA per seed."""
    rows = ["| Method | Seeds | OP | BWT | LA | Routing acc. | BBH after |", "|---|---|---:|---:|---:|---:|---:|"]
    per = []
    for m, v in out["methods"].items():
        rows.append(f"| {m} | {', '.join(map(str, v['seeds']))} | {fmt(v['OP'])} | {fmt(v['BWT'], True)} | "
                    f"{fmt(v['LA'])} | {fmt(v['routing'])} | {fmt(v['BBH_after'])} |")
        cells = []
        for i, _ in enumerate(v["seeds"]):
            op = f"{v['OP']['values'][i]:.1f}"
            if v["BWT"] is not None:
                op += _minus(f"/{v['BWT']['values'][i]:+.1f}/{v['LA']['values'][i]:.1f}")
            cells.append(op)
        per.append(f"{m} {', '.join(cells)}")
    return "\n".join(rows) + "\n\nPer seed (OP / BWT / LA): " + "; ".join(per) + "."


def main():
    args = sys.argv[1:]
    md = args[:1] == ["--markdown"]
    if md:
        args = args[1:]
    runs = per_seed(args[0], args[1:])
    all_seeds = sorted({s for m in runs.values() for s in m})
    out = {"seeds": all_seeds, "methods": {}}
    for m, by_seed in runs.items():
        seeds = sorted(by_seed)
        rows = [by_seed[s] for s in seeds]
        mtl = m == "mtl"
        out["methods"][m] = {
            "seeds": seeds,
            "OP": stats([overall_performance(r["R"]) for r in rows]),
            "BWT": None if mtl else stats([backward_transfer(r["R"]) for r in rows]),
            "LA": None if mtl else stats([learning_accuracy(r["R"]) for r in rows]),
            "routing": stats([r["routing"] for r in rows]),
            "BBH_after": stats([r["bbh"] for r in rows]),
        }
    print(markdown(out) if md else json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
