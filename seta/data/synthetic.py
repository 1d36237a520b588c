"""The embedded synthetic TRACE-like stream and the generic pre-training corpus.

Eight tasks, one per TRACE task, with the same folder names and metric keys, generated
deterministically from a seed. Each prompt starts with a short task-specific instruction
(as TRACE prompts do), so the task can be told from the prompt alone. The tasks are built
from one shared lexicon and deliberately conflict, so that naive sequential fine-tuning
has something to forget:

    C-STANCE     A/B/C from the stance verb of a "news" sentence       exact_match
    FOMC         A/B/C from the trend word of the *same kind* of sentence  exact_match
    MeetingBank  extract "<who> will <action> <topic>" from 3-sentence minutes  rouge_l
    Py150        continue a small loop function (copy its variable names)  edit_sim
    ScienceQA    which of two opposite properties an object has, "<L>. because ..."  first_char
                 (options in a fixed order per pair: the letter needs the object's property)
    NumGLUE-cm   a + b from a word problem                               exact_match
    NumGLUE-ds   a * b from a word problem with the same question          exact_match
    20Minuten    simplify: plain verb, drop the time and the reason clause  sari

C-STANCE/FOMC read different words of the same sentence type, NumGLUE-cm/-ds apply
different operations to the same numbers under the same question, and MeetingBank/
20Minuten both rewrite sentences about people and topics. The generic corpus (the tiny
base model's pre-training text) states the world knowledge the tasks lean on (object
properties, small sums and products, also inside little stories, sentence and code patterns,
repeated clauses that teach in-context copying) but never a task prompt or its QA format.

Design notes (from measuring a 2-layer, hidden-128 Llama, full fine-tuning, 320 steps of
32 per task): ScienceQA offers two options in a fixed order per property pair, because a
random option order (letter = position of the matching option) stayed at chance even under
joint training; the corpus carries story-form arithmetic and repeated clauses because
without them NumGLUE and MeetingBank were not learned within a task's budget.

Each task draws from its own RNG seeded by (seed, task), so a task's examples do not
depend on the order or on the other tasks. Prompts are unique within a task across all
splits (no train/test leakage).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from seta.data.types import TRACE_METRICS, Example, Stream, Task, resolve_order

NAMES = ["ana", "ben", "cleo", "dan", "eva", "finn", "gus", "hana",
         "ivo", "jon", "kai", "lena", "mia", "noor", "omar", "pia"]
TOPICS = ["the park", "the bridge", "the school", "the road", "the library", "the market",
          "the tax", "the museum", "the harbor", "the tram", "the stadium", "the clinic"]
STANCE_VERBS = {  # stance -> verbs; simple form used by the simplification task
    "support": ["backs", "praises", "welcomes", "defends"],
    "oppose": ["rejects", "attacks", "blocks", "mocks"],
    "neutral": ["mentions", "discusses", "describes", "visits"],
}
SIMPLE_VERB = {"support": "likes", "oppose": "dislikes", "neutral": "talks about"}
ECON = ["prices", "wages", "rents", "costs", "sales", "jobs", "profits", "loans"]
TRENDS = {  # direction -> words
    "up": ["rising", "climbing", "growing", "soaring"],
    "down": ["falling", "dropping", "sinking", "shrinking"],
    "flat": ["steady", "stable", "flat", "unchanged"],
}
TIMES = ["today", "this week", "on monday", "last night", "this year", "again"]
CONNECTORS = ["while", "as", "and", "since"]
ACTIONS = ["repair", "close", "expand", "fund", "sell", "rebuild", "move", "clean"]
PROPERTIES = {  # property -> objects that have it; properties come in opposite pairs
    "hot": ["fire", "soup", "lava"],
    "cold": ["ice", "snow", "frost"],
    "heavy": ["a rock", "a truck", "an anvil"],
    "light": ["a feather", "paper", "a leaf"],
    "soft": ["a pillow", "wool", "a sponge"],
    "hard": ["steel", "a brick", "granite"],
}
OPPOSITES = [("hot", "cold"), ("heavy", "light"), ("soft", "hard")]
HANDLING = ["touches", "holds", "lifts", "finds", "sees"]
THINGS = ["apples", "coins", "books", "eggs", "pens", "cards", "shells", "stamps"]
CODE_KINDS = {  # function-name prefix -> (initial value, body lines with {acc}/{it})
    "sum": ("<NUM_LIT>", "{acc} += {it} <EOL> return {acc}"),
    "count": ("<NUM_LIT>", "{acc} += <NUM_LIT> <EOL> return {acc}"),
    "collect": ("[ ]", "{acc} . append ( {it} ) <EOL> return {acc}"),
    "show": ("<STR_LIT>", "print ( {it} ) <EOL> return {acc}"),
}
ACC_NAMES = ["total", "res", "acc", "out", "val", "n"]
ITEM_NAMES = ["x", "item", "v", "e", "k"]
ARG_NAMES = ["items", "values", "nums", "data", "xs"]
LETTERS = "ABC"


def _news(rng: random.Random) -> tuple[str, str, str]:
    """A sentence with a stance clause and a trend clause; returns (text, stance, direction)."""
    stance = rng.choice(list(STANCE_VERBS))
    direction = rng.choice(list(TRENDS))
    who = f"{rng.choice(NAMES)} {rng.choice(STANCE_VERBS[stance])} {rng.choice(TOPICS)}"
    trend = f"{rng.choice(ECON)} are {rng.choice(TRENDS[direction])}"
    first, second = (who, trend) if rng.random() < 0.5 else (trend, who)
    return f"{first} {rng.choice(CONNECTORS)} {second}", stance, direction


def _c_stance(rng: random.Random) -> Example:
    text, stance, _ = _news(rng)
    prompt = f"Stance task: give the author's stance.\nText: {text}.\nA. support B. oppose C. neutral\nAnswer:"
    return Example(prompt, LETTERS[list(STANCE_VERBS).index(stance)])


def _fomc(rng: random.Random) -> Example:
    text, _, direction = _news(rng)
    prompt = f"Policy task: is the text hawkish?\nText: {text}.\nA. hawkish B. dovish C. neutral\nAnswer:"
    return Example(prompt, LETTERS[list(TRENDS).index(direction)])


def _meetingbank(rng: random.Random) -> Example:
    who, action, topic = rng.choice(NAMES), rng.choice(ACTIONS), rng.choice(TOPICS)
    other = rng.choice([n for n in NAMES if n != who])
    sentences = [
        f"{who} agreed to {action} {topic}",
        f"{other} {rng.choice(rng.choice(list(STANCE_VERBS.values())))} {rng.choice(TOPICS)}",
        f"{rng.choice(ECON)} are {rng.choice(rng.choice(list(TRENDS.values())))}",
    ]
    rng.shuffle(sentences)
    prompt = f"Summarize the meeting.\nMinutes: {'. '.join(sentences)}.\nSummary:"
    return Example(prompt, f"{who} will {action} {topic}")


def _py150(rng: random.Random) -> Example:
    kind = rng.choice(list(CODE_KINDS))
    init, body = CODE_KINDS[kind]
    acc, it, arg = rng.choice(ACC_NAMES), rng.choice(ITEM_NAMES), rng.choice(ARG_NAMES)
    fn = f"{kind}_{rng.choice(THINGS)}"
    prompt = (f"Continue the code.\nCode: def {fn} ( {arg} ) : <EOL> {acc} = {init} <EOL> "
              f"for {it} in {arg} : <EOL>")
    return Example(prompt, body.format(acc=acc, it=it))


def _scienceqa(rng: random.Random) -> Example:
    pair = rng.choice(OPPOSITES)  # the two options, a property and its opposite, in a fixed order
    right = rng.choice(pair)
    obj = rng.choice(PROPERTIES[right])
    options = " ".join(f"{LETTERS[i]}. {p}" for i, p in enumerate(pair))
    scene = f"{rng.choice(NAMES)} {rng.choice(HANDLING)} {obj} {rng.choice(TIMES)}"
    prompt = (f"Science question: answer with a letter and a reason.\n"
              f"Question: {scene}. what is it like?\nOptions: {options}\nAnswer:")
    return Example(prompt, f"{LETTERS[pair.index(right)]}. because {obj} is {right}")


def _number_problem(rng: random.Random, kind: str) -> Example:
    who, thing = rng.choice(NAMES), rng.choice(THINGS)
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    if kind == "cm":
        other = rng.choice([n for n in NAMES if n != who])
        story, answer = f"{who} has {a} {thing} and {other} has {b} {thing}.", a + b
    else:
        story, answer = f"{who} has {a} bags with {b} {thing} in each.", a * b
    head = "Math task" if kind == "cm" else "Quantity task"
    prompt = f"{head}: answer with a number.\nQuestion: {story} how many {thing} are there in total?\nAnswer:"
    return Example(prompt, str(answer))


def _20minuten(rng: random.Random) -> Example:
    stance = rng.choice(list(STANCE_VERBS))
    who, topic = rng.choice(NAMES), rng.choice(TOPICS)
    reason = f"{rng.choice(ECON)} are {rng.choice(rng.choice(list(TRENDS.values())))}"
    text = f"{who} {rng.choice(STANCE_VERBS[stance])} {topic} {rng.choice(TIMES)} because {reason}"
    prompt = f"Simplify the text.\nText: {text}.\nSimple:"
    return Example(prompt, f"{who} {SIMPLE_VERB[stance]} {topic}.")


GENERATORS: dict[str, Callable[[random.Random], Example]] = {
    "C-STANCE": _c_stance,
    "FOMC": _fomc,
    "MeetingBank": _meetingbank,
    "Py150": _py150,
    "ScienceQA": _scienceqa,
    "NumGLUE-cm": lambda rng: _number_problem(rng, "cm"),
    "NumGLUE-ds": lambda rng: _number_problem(rng, "ds"),
    "20Minuten": _20minuten,
}


def _unique_examples(gen: Callable[[random.Random], Example], rng: random.Random, n: int, task: str) -> list[Example]:
    """`n` examples with distinct prompts (the generators' spaces are far larger than n)."""
    seen: set[str] = set()
    out: list[Example] = []
    for _ in range(50 * n + 1000):
        if len(out) == n:
            return out
        ex = gen(rng)
        if ex.prompt not in seen:
            seen.add(ex.prompt)
            out.append(ex)
    if len(out) == n:
        return out
    raise ValueError(f"task {task}: could only make {len(out)} distinct prompts, asked for {n}; ask for fewer")


def synthetic_task(name: str, seed: int = 0, n_train: int = 1000, n_eval: int = 50, n_test: int = 100) -> Task:
    """One synthetic task (a TRACE folder name), deterministic in (seed, name, sizes)."""
    if name not in GENERATORS:
        raise ValueError(f"unknown synthetic task {name!r}; known tasks: {list(GENERATORS)}")
    for arg, value in (("n_train", n_train), ("n_eval", n_eval), ("n_test", n_test)):
        if not isinstance(value, int) or value < (0 if arg == "n_eval" else 1):
            raise ValueError(f"{arg} must be an int >= {0 if arg == 'n_eval' else 1}, got {value!r}")
    rng = random.Random(f"seta-synthetic/{seed}/{name}")
    examples = _unique_examples(GENERATORS[name], rng, n_train + n_eval + n_test, name)
    return Task(name, TRACE_METRICS[name], examples[:n_train], examples[n_train:n_train + n_eval],
                examples[n_train + n_eval:])


def synthetic_stream(
    seed: int = 0,
    n_train: int = 1000,
    n_eval: int = 50,
    n_test: int = 100,
    order: int | str | Sequence[str] = 1,
) -> Stream:
    """The eight-task synthetic TRACE-like stream, in TRACE order 1 by default."""
    names = resolve_order(order, known=GENERATORS)
    tasks = [synthetic_task(n, seed, n_train, n_eval, n_test) for n in names]
    return Stream(tasks, name=f"synthetic(seed={seed})")


# ---------------------------------------------------------------------------------------
# Generic corpus: pre-training text for the tiny base model, and a held-out part.


def _generic_sentence(rng: random.Random) -> str:
    kind = rng.randrange(9)
    if kind == 8:  # repetition, so the base learns in-context copying (as real pre-training text teaches)
        said = _news(rng)[0]
        return f"{rng.choice(NAMES)} said that {said}. {rng.choice(NAMES)} also said that {said}."
    if kind == 0:
        return f"{_news(rng)[0]}."
    if kind == 1:
        prop = rng.choice(list(PROPERTIES))
        return f"{rng.choice(PROPERTIES[prop])} is {prop}."
    if kind == 2:
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        return f"{a} plus {b} is {a + b}."
    if kind == 3:
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        return f"{a} times {b} is {a * b}."
    if kind == 4:  # numeracy in stories (LLM-style general knowledge; never in the task's QA format)
        who, other, thing = rng.choice(NAMES), rng.choice(NAMES), rng.choice(THINGS)
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        if rng.random() < 0.5:
            return f"{who} had {a} {thing}, got {b} from {other} and so had {a + b} {thing}."
        return f"{who} filled {a} boxes with {b} {thing} each, {a * b} {thing} in all."
    if kind == 5:
        return f"the council met {rng.choice(TIMES)} and {rng.choice(NAMES)} talked about {rng.choice(TOPICS)}."
    if kind == 6:
        var, arg = rng.choice(ACC_NAMES), rng.choice(ARG_NAMES)
        return f"def get_{rng.choice(THINGS)} ( {arg} ) : <EOL> {var} = len ( {arg} ) <EOL> return {var}"
    stance = rng.choice(list(STANCE_VERBS))
    return f"{rng.choice(STANCE_VERBS[stance])} means {SIMPLE_VERB[stance]}."


@dataclass(frozen=True)
class Corpus:
    """Generic text: `train` for pre-training the tiny base, `heldout` for its perplexity."""

    train: tuple[str, ...]  # documents (a few sentences each)
    heldout: tuple[str, ...]  # disjoint documents from the same distribution


def generic_corpus(seed: int = 0, n_train: int = 4000, n_heldout: int = 200) -> Corpus:
    """Deterministic generic documents of 3-6 sentences; held-out documents never occur in train."""
    if n_train < 1 or n_heldout < 0:
        raise ValueError(f"n_train must be >= 1 and n_heldout >= 0, got {n_train}, {n_heldout}")
    rng = random.Random(f"seta-generic/{seed}")
    docs: list[str] = []
    seen: set[str] = set()
    while len(docs) < n_train + n_heldout:
        doc = " ".join(_generic_sentence(rng) for _ in range(rng.randint(3, 6)))
        if doc not in seen:
            seen.add(doc)
            docs.append(doc)
    return Corpus(tuple(docs[:n_train]), tuple(docs[n_train:]))
