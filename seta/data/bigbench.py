"""BIG-bench JSON tasks -> `{prompt, answer}` tasks for a stream directory (TRACE layout).

Read `bigbench/benchmark_tasks/<task>/task.json` straight out of the `bigbench` source
archive (or a directory of task folders); nothing is installed. Rules, per task:

- **Kind.** Every example has `target_scores` and the task does not prefer a generative score
  (`preferred_score` is not `exact_str_match`, or some example lacks a `target`): a
  multiple-choice task. Every example has a `target`: a generative task. Else an error.
- **Multiple choice** becomes a letter-choice prompt, scored by exact match on the letter:

      {task_prefix}{example_input_prefix}{input}{example_output_prefix}
      A. <choice>
      B. <choice>
      Answer:

  answer = the letter of the highest-scored choice (only the first of several equal best
  choices is kept, so exactly one letter is right). Choices keep the file's order when every
  example offers the same choices in the same order (a fixed label set, like FOMC's A/B/C),
  else they are shuffled with a seed per example (files often list the right one first).
  Above 26 choices, the right one and 25 seeded distractors are kept. An absent input prefix
  is BIG-bench's default "\\nQ: "; an absent output prefix is left out.
- **Generative** keeps its target (the first one if it is a list), prompt
  `{task_prefix}{example_input_prefix}{input}{example_output_prefix}`, with BIG-bench's own
  defaults "\\nQ: " / "\\nA: " for absent prefixes. Metric: `exact_match` if the task prefers
  `exact_str_match`, or lists it among its `metrics` and its median target has at most
  `SHORT_TARGET_WORDS` words; else `rouge_l` (free text, where BIG-bench scores BLEU/ROUGE).
- Prompts and answers are stripped of surrounding whitespace; an input repeated in the file
  is kept once (no train/test leakage) and a blank input is dropped (real files have a few).
- **Splits** (BIG-bench has none): shuffle with `random.Random(f"{seed}/{task}")`, then
  test = the first `min(max_test, round(test_fraction * n))`, eval = the next
  `min(max_eval, round(eval_fraction * n))`, train = the rest, at most `max_train`; each kept
  in file order. The test split does not depend on the train cap.

Every file carries a canary asking that the data never enter training corpora: never write
BIG-bench text into a repository, and never train on tasks used for evaluation.
"""

from __future__ import annotations

import json
import random
import re
import statistics
import string
import tarfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from seta.data.types import Example, Task

# BIG-Bench Hard (Suzgun et al., 2022), as BIG-bench folder names: general-ability evaluation
# only, never part of a training stream (`bigbench_task` refuses them unless allow_bbh=True).
BBH_TASKS: tuple[str, ...] = (
    "boolean_expressions", "causal_judgment", "date_understanding", "disambiguation_qa",
    "dyck_languages", "formal_fallacies_syllogisms_negation", "geometric_shapes", "hyperbaton",
    "logical_deduction", "movie_recommendation", "multistep_arithmetic", "navigate",
    "object_counting", "penguins_in_a_table", "reasoning_about_colored_objects", "ruin_names",
    "salient_translation_error_detection", "snarks", "sports_understanding", "temporal_sequences",
    "tracking_shuffled_objects", "web_of_lies", "word_sorting",
)

# The default BIG-bench training stream: one task per kind, none of them BBH, all with their
# examples at the top level of the task folder and at least ~150 examples.
DEFAULT_STREAM: tuple[str, ...] = (
    "vitaminc_fact_verification",  # classification: True / False / Neither (fixed labels A/B/C)
    "language_identification",  # multiple choice with 11 options (shuffled per example)
    "qa_wikidata",  # generative, short factual answer: exact match
    "few_shot_nlg",  # free text: a sentence from a dialogue act (ROUGE-L)
    "semantic_parsing_spider",  # code: SQL from a question and a schema (ROUGE-L)
    "matrixshapes",  # arithmetic on matrix shapes: exact match
    "word_unscrambling",  # symbol manipulation: exact match
)

# Validation tasks (tuning lambda, budgets, epochs): other non-BBH tasks of the same kinds,
# disjoint from DEFAULT_STREAM, so settings are not chosen on the stream they are reported on.
DEFAULT_VALIDATION: tuple[str, ...] = (
    "epistemic_reasoning",  # classification: entailment / non-entailment
    "intent_recognition",  # multiple choice with 7 fixed intents
    "disfl_qa",  # generative extractive QA: exact match
    "international_phonetic_alphabet_transliterate",  # free text (ROUGE-L)
    "operators",  # arithmetic: exact match
)

# BBH subtasks of the default general-ability check (`bbh_general`): short prompts (a 3-shot
# prompt stays under ~600 tokens), every kind BBH has (binary and many-option multiple choice,
# a generative count), so a before/after on 2 CPU cores takes minutes, not hours.
DEFAULT_BBH: tuple[str, ...] = (
    "hyperbaton", "navigate", "movie_recommendation", "disambiguation_qa", "object_counting", "date_understanding",
)

LETTERS = string.ascii_uppercase
SHORT_TARGET_WORDS = 3  # median target words at or below which a listed exact_str_match is used
_DEFAULT_INPUT_PREFIX, _DEFAULT_OUTPUT_PREFIX = "\nQ: ", "\nA: "  # BIG-bench's JSON task defaults
_MEMBER = re.compile(r"(?:^|.*/)benchmark_tasks/([^/]+)/task\.json$")
_SUBTASK = re.compile(r"(?:^|.*/)benchmark_tasks/([^/]+)/[^/]+/task\.json$")


def _parse(raw: bytes, where: str) -> dict:
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{where}: not valid UTF-8 at byte {e.start}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    if not isinstance(data, dict) or not isinstance(data.get("examples"), list):
        raise ValueError(f"{where}: expected a BIG-bench task object with an 'examples' list")
    return data


def _unknown(source, unknown: list[str], known: Iterable[str], nested: set[str]) -> ValueError:
    hint = [n for n in unknown if n in nested]
    note = f" ({hint} keep their examples in sub-task folders, which are not supported)" if hint else ""
    return ValueError(f"{source}: no BIG-bench task(s) {unknown}{note}; tasks with a top-level "
                      f"task.json: {sorted(known)}")


def read_bigbench_tasks(source: str | Path, names: Sequence[str]) -> dict[str, tuple[str, dict]]:
    """{name: (where, task.json data)} for `names`, from the sdist archive or a directory.

    source: `bigbench-*.tar.gz` (read in one streaming pass, nothing extracted), or a directory
    holding `<task>/task.json` folders. An unknown name raises ValueError listing the known ones.
    """
    source = Path(source)
    wanted, found, known, nested = set(names), {}, set(), set()
    if source.is_dir():
        for path in sorted(source.glob("*/task.json")):
            known.add(path.parent.name)
            if path.parent.name in wanted:
                found[path.parent.name] = (str(path), _parse(path.read_bytes(), str(path)))
        nested = {p.parent.parent.name for p in source.glob("*/*/task.json")}
    elif source.is_file():
        try:
            with tarfile.open(source, "r:*") as archive:
                for member in archive:
                    if (m := _SUBTASK.match(member.name)) is not None:
                        nested.add(m.group(1))
                    if (m := _MEMBER.match(member.name)) is None or not member.isfile():
                        continue
                    known.add(m.group(1))
                    if m.group(1) in wanted:
                        where = f"{source}:{member.name}"
                        found[m.group(1)] = (where, _parse(archive.extractfile(member).read(), where))
        except (tarfile.TarError, EOFError, OSError) as e:
            raise ValueError(f"{source}: not a readable BIG-bench source archive ({e}); delete it and "
                             "fetch it again (pip download --no-deps bigbench==1.0.0)") from None
    else:
        raise FileNotFoundError(f"{source}: no BIG-bench archive or task directory here")
    unknown = [n for n in names if n not in found]
    if unknown:
        raise _unknown(source, unknown, known, nested - known)
    return found


def _kind(data: dict, where: str) -> str:
    examples = data["examples"]
    if not examples:
        raise ValueError(f"{where}: 'examples' is empty")
    for i, ex in enumerate(examples):
        if not isinstance(ex, dict) or "input" not in ex or not ("target" in ex or "target_scores" in ex):
            raise ValueError(f"{where}: examples[{i}] needs an 'input' and a 'target' or 'target_scores'")
    scored = all("target_scores" in ex for ex in examples)
    targeted = all("target" in ex for ex in examples)
    if scored and not (targeted and data.get("preferred_score") == "exact_str_match"):
        return "choice"
    if targeted:
        return "generate"
    raise ValueError(f"{where}: mixes examples with only 'target' and only 'target_scores'; "
                     "a task must be one kind")


def _target(ex: dict, where: str, i: int) -> str:
    target = ex["target"]
    if isinstance(target, list):
        if not target:
            raise ValueError(f"{where}: examples[{i}]: 'target' is an empty list")
        target = target[0]
    if not isinstance(target, str) or not target.strip():
        raise ValueError(f"{where}: examples[{i}]: 'target' must be a non-empty string, got {target!r}")
    return target.strip()


def generative_metric(data: dict, targets: Sequence[str]) -> str:
    """`exact_match` or `rouge_l` for a generative task (the rule in the module docstring)."""
    if data.get("preferred_score") == "exact_str_match":
        return "exact_match"
    short = statistics.median(len(t.split()) for t in targets) <= SHORT_TARGET_WORDS
    return "exact_match" if short and "exact_str_match" in (data.get("metrics") or []) else "rouge_l"


def _choices(ex: dict, where: str, i: int, fixed: bool, rng: random.Random) -> tuple[list[str], int]:
    scores = ex["target_scores"]
    if not isinstance(scores, dict) or not scores:
        raise ValueError(f"{where}: examples[{i}]: 'target_scores' must be a non-empty object")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in scores.values()):
        raise ValueError(f"{where}: examples[{i}]: every 'target_scores' value must be a number")
    best = max(scores.values())
    if best <= 0 or len(scores) < 2:
        raise ValueError(f"{where}: examples[{i}]: needs at least two choices and one with a positive score")
    right = next(c for c, v in scores.items() if v == best)
    options = [c for c, v in scores.items() if v != best or c == right]
    if len(options) > len(LETTERS):
        wrong = rng.sample([c for c in options if c != right], len(LETTERS) - 1)
        options = [c for c in options if c == right or c in wrong]
    if not fixed:
        rng.shuffle(options)
    return options, options.index(right)


def _text(data: dict, key: str, default: str, where: str) -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise ValueError(f"{where}: {key!r} must be a string, got {type(value).__name__}")
    return value


def bigbench_examples(name: str, data: dict, where: str, seed: int = 0) -> tuple[str, list[Example]]:
    """(metric, examples) of one BIG-bench task, in file order, repeated inputs dropped."""
    kind = _kind(data, where)
    prefix = _text(data, "task_prefix", "", where)
    in_prefix = _text(data, "example_input_prefix", _DEFAULT_INPUT_PREFIX, where)
    out_prefix = _text(data, "example_output_prefix", "" if kind == "choice" else _DEFAULT_OUTPUT_PREFIX, where)
    orders = {tuple(ex["target_scores"]) if isinstance(ex["target_scores"], dict) else None
              for ex in data["examples"]} if kind == "choice" else set()
    examples, answers, seen = [], [], set()
    for i, ex in enumerate(data["examples"]):
        if not isinstance(ex["input"], str):
            raise ValueError(f"{where}: examples[{i}]: 'input' must be a string, got {type(ex['input']).__name__}")
        if not ex["input"].strip() or ex["input"] in seen:
            continue  # a blank input asks nothing; a repeated one would leak across splits
        seen.add(ex["input"])
        prompt = (prefix + in_prefix + ex["input"] + out_prefix).strip()
        if kind == "choice":
            options, k = _choices(ex, where, i, len(orders) == 1, random.Random(f"{seed}/{name}/{i}"))
            lines = [f"{LETTERS[j]}. {str(c).strip()}" for j, c in enumerate(options)]
            prompt, answer = "\n".join([prompt, *lines, "Answer:"]), LETTERS[k]
        else:
            answer = _target(ex, where, i)
        examples.append(Example(prompt, answer))
        answers.append(answer)
    metric = "exact_match" if kind == "choice" else generative_metric(data, answers)
    return metric, examples


def split_counts(n: int, max_train: int, max_eval: int, max_test: int,
                 eval_fraction: float = 0.1, test_fraction: float = 0.2) -> tuple[int, int, int]:
    """(train, eval, test) sizes for `n` examples (the split rule in the module docstring)."""
    n_test = min(max_test, round(test_fraction * n))
    n_eval = min(max_eval, round(eval_fraction * n))
    return min(max_train, n - n_test - n_eval), n_eval, n_test


def bigbench_task(name: str, data: dict, where: str = "task.json", *, seed: int = 0, max_train: int = 1000,
                  max_eval: int = 100, max_test: int = 200, eval_fraction: float = 0.1,
                  test_fraction: float = 0.2, allow_bbh: bool = False) -> Task:
    """One BIG-bench task.json as a `Task` with seeded train / eval / test splits."""
    if name in BBH_TASKS and not allow_bbh:
        raise ValueError(f"{name!r} is a BIG-Bench Hard task, kept for general-ability evaluation; "
                         "leave it out of the stream (or pass allow_bbh=True / --allow-bbh)")
    for arg, value in (("max_train", max_train), ("max_eval", max_eval), ("max_test", max_test)):
        if not isinstance(value, int) or value < (0 if arg == "max_eval" else 1):
            raise ValueError(f"{arg} must be a {'non-negative' if arg == 'max_eval' else 'positive'} int, got {value!r}")
    if not (0 <= eval_fraction < 1 and 0 < test_fraction < 1 and eval_fraction + test_fraction < 1):
        raise ValueError(f"need 0 <= eval_fraction, 0 < test_fraction and a sum below 1, got "
                         f"{eval_fraction}, {test_fraction}")
    metric, examples = bigbench_examples(name, data, where, seed)
    n_train, n_eval, n_test = split_counts(len(examples), max_train, max_eval, max_test, eval_fraction, test_fraction)
    if n_train < 1 or n_test < 1:
        raise ValueError(f"{where}: {len(examples)} distinct example(s) are too few for a train and a test split")
    order = list(range(len(examples)))
    random.Random(f"{seed}/{name}").shuffle(order)
    cuts = [order[:n_test], order[n_test:n_test + n_eval], order[n_test + n_eval:][:n_train]]
    test, eval_, train = ([examples[i] for i in sorted(idx)] for idx in cuts)
    return Task(name, metric, train, eval_, test)


_ANSWER_CUE = re.compile(r"\n?(?:Answer|A):\s*$")
_QUESTION_CUE = re.compile(r"^Q:\s*")


def bbh_general(name: str, data: dict, where: str = "task.json", *, seed: int = 0, n_test: int = 50,
                n_shots: int = 3) -> tuple[list[dict], list[dict]]:
    """(test rows, few-shot rows) of one BBH task for `seta.eval.harness` (``{"input", "target"}``).

    The examples are `bigbench_task`'s (letter choices for multiple choice, the target kept for
    generative tasks; `allow_bbh`), with BIG-bench's leading "Q:" and the trailing answer cue
    ("Answer:" / "A:") cut, because the harness's BBH prompt adds its own ("Q: {input}\nA:"). The few-shot rows come from the
    task's train split, disjoint from the test rows; test = at most `n_test` seeded examples.
    """
    if name not in BBH_TASKS:
        raise ValueError(f"{name!r} is not a BIG-Bench Hard task; known: {', '.join(BBH_TASKS)}")
    if n_test < 1 or n_shots < 0:
        raise ValueError(f"n_test must be >= 1 and n_shots >= 0, got {n_test}, {n_shots}")
    task = bigbench_task(name, data, where, seed=seed, max_train=max(1, n_shots), max_eval=0, max_test=n_test,
                         test_fraction=0.5, allow_bbh=True)
    rows = lambda examples: [{"input": _QUESTION_CUE.sub("", _ANSWER_CUE.sub("", e.prompt).strip()), "target": e.answer}  # noqa: E731
                             for e in examples]
    shots = rows(task.train[:n_shots])
    if len(shots) < n_shots:
        raise ValueError(f"{where}: {len(task.train)} example(s) left for {n_shots} few-shot rows")
    return rows(task.test), shots
