"""Task-stream types: `Example`, `Task`, `Stream`, and the TRACE task table.

A task is a name, a metric key and three splits of `{prompt, answer}` examples;
a stream is an ordered sequence of tasks. The metric keys are the contract with
`seta.eval`, which dispatches on them:

    exact_match   string equality after stripping (C-STANCE, FOMC, NumGLUE-cm/-ds)
    first_char    accuracy on the first character (ScienceQA: "B. because ...")
    rouge_l       ROUGE-L F (MeetingBank)
    edit_sim      fuzz-ratio style edit similarity after the Py150 normalisation
    sari          SARI (20Minuten)
    numeric       the leading number, compared as a number (arithmetic word problems)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

METRIC_KEYS: tuple[str, ...] = ("exact_match", "first_char", "rouge_l", "edit_sim", "sari", "numeric")

# Folder names of the TRACE tasks -> metric key.
TRACE_METRICS: dict[str, str] = {
    "C-STANCE": "exact_match",
    "FOMC": "exact_match",
    "MeetingBank": "rouge_l",
    "Py150": "edit_sim",
    "ScienceQA": "first_char",
    "NumGLUE-cm": "exact_match",
    "NumGLUE-ds": "exact_match",
    "20Minuten": "sari",
}

TRACE_ORDER_1: list[str] = [
    "C-STANCE", "FOMC", "MeetingBank", "Py150", "ScienceQA", "NumGLUE-cm", "NumGLUE-ds", "20Minuten",
]
TRACE_ORDER_2: list[str] = [
    "NumGLUE-cm", "NumGLUE-ds", "FOMC", "20Minuten", "C-STANCE", "Py150", "MeetingBank", "ScienceQA",
]

SPLITS: tuple[str, ...] = ("train", "eval", "test")


def resolve_order(order: int | str | Sequence[str], known: Iterable[str] | None = None) -> list[str]:
    """Task names for `order`: 1 / "1" / "order1", 2 / "2" / "order2", or an explicit list of names.

    Names are checked against `known` (default: the TRACE tasks); an unknown or repeated
    name raises ValueError listing the known ones.
    """
    known_list = list(TRACE_METRICS if known is None else known)
    if isinstance(order, (int, str)) and str(order).lower().removeprefix("order") in ("1", "2"):
        names = list(TRACE_ORDER_1 if str(order).lower().removeprefix("order") == "1" else TRACE_ORDER_2)
    elif isinstance(order, str) or not isinstance(order, Sequence):
        raise ValueError(
            f"order must be 1, 2, 'order1', 'order2' or a list of task names, got {order!r}"
        )
    else:
        names = list(order)
    if not names:
        raise ValueError("order is empty: give at least one task name")
    unknown = [n for n in names if n not in known_list]
    if unknown:
        raise ValueError(f"unknown task name(s) {unknown}; known tasks: {known_list}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"task name(s) {repeated} appear more than once in the order {names}")
    return names


@dataclass(frozen=True)
class Example:
    """One `{prompt, answer}` pair; the prompt already holds the task's instruction prefix."""

    prompt: str  # model input, instruction included; non-empty
    answer: str  # reference output; non-empty

    def __post_init__(self) -> None:
        for name in ("prompt", "answer"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise ValueError(f"Example.{name} must be a str, got {type(value).__name__}")
            if not value.strip():
                raise ValueError(f"Example.{name} is empty; every example needs a prompt and an answer")

    def to_dict(self) -> dict[str, str]:
        return {"prompt": self.prompt, "answer": self.answer}


@dataclass(frozen=True)
class Task:
    """A named task with a metric key and train / eval / test examples (stored as tuples)."""

    name: str  # e.g. "C-STANCE"; also the folder name in the TRACE layout
    metric: str  # one of METRIC_KEYS
    train: Sequence[Example] = ()  # training examples
    eval: Sequence[Example] = ()  # validation examples; may be empty (TRACE variants without eval.json)
    test: Sequence[Example] = ()  # test examples, scored with `metric`

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Task.name must be a non-empty str, got {self.name!r}")
        if self.metric not in METRIC_KEYS:
            raise ValueError(f"task {self.name!r}: unknown metric {self.metric!r}; use one of {METRIC_KEYS}")
        for split in SPLITS:
            examples = tuple(getattr(self, split))
            bad = [i for i, ex in enumerate(examples) if not isinstance(ex, Example)]
            if bad:
                raise ValueError(f"task {self.name!r}: {split}[{bad[0]}] is not an Example")
            object.__setattr__(self, split, examples)

    def split(self, name: str) -> tuple[Example, ...]:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; use one of {SPLITS}")
        return getattr(self, name)


@dataclass(frozen=True)
class Stream:
    """An ordered sequence of tasks with distinct names. `name` is a label, ignored by ==."""

    tasks: Sequence[Task]  # in training order
    name: str = field(default="", compare=False)  # e.g. "synthetic" or "trace"

    def __post_init__(self) -> None:
        tasks = tuple(self.tasks)
        if not tasks:
            raise ValueError("a Stream needs at least one task")
        if not all(isinstance(t, Task) for t in tasks):
            raise ValueError("Stream.tasks must hold Task objects")
        names = [t.name for t in tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"task names in a stream must be distinct, got {names}")
        object.__setattr__(self, "tasks", tasks)

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self) -> Iterator[Task]:
        return iter(self.tasks)

    def __getitem__(self, key: int | str) -> Task:
        if isinstance(key, str):
            for t in self.tasks:
                if t.name == key:
                    return t
            raise KeyError(f"no task {key!r} in this stream; tasks: {self.names}")
        return self.tasks[key]

    def reorder(self, order: int | str | Sequence[str]) -> Stream:
        """The same tasks in another order (1, 2, or a list of names; a subset is allowed)."""
        names = resolve_order(order, known=self.names)
        return Stream(tuple(self[n] for n in names), name=self.name)
