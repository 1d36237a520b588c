"""Converters of real benchmark formats, on small hand-made rows (malformed ones skipped and counted)."""

import json

from seta.data.conll import conll_extraction, entities, read_conll
from seta.data.converters import (CUE, chat_items, labelled_items, leading_number, multiple_choice, numeric_items,
                                  parse_options, read_jsonl)


def test_read_jsonl_counts_lines_that_are_not_objects():
    rows, bad = read_jsonl('{"a": 1}\n\n{broken\n[1, 2]\n{"b": 2}\n')
    assert rows == [{"a": 1}, {"b": 2}] and bad == {"not a JSON line": 1, "not a JSON object": 1}


def test_multiple_choice_gives_a_letter_answer_and_skips_bad_rows():
    rows = [
        {"question": "Which is red?", "options": "\nA. sky\nB. apple\nC. grass", "answer": "B. apple"},
        {"question": "Pick two", "passage": "Some context.", "options": ["one", "two"], "answer": "two"},
        {"question": "Bare letter", "options": "A. x\nB. y", "answer": "A"},
        {"question": "Extra spaces", "options": "A. finish  it \nB. no", "answer": "A. finish  it"},
        {"question": "Skipped letter", "options": "A. x\nC. y", "answer": "A. x"},  # options unreadable
        {"question": "Wrong answer", "options": "A. x\nB. y", "answer": "C. z"},  # not among the options
        {"question": "", "options": "A. x\nB. y", "answer": "A"},  # no question
        {"question": "No answer", "options": "A. x\nB. y"},
        "not an object",
    ]
    out = multiple_choice(rows)
    assert [e.answer for e in out.examples] == ["B", "B", "A", "A"]
    assert out.examples[0].prompt == "Which is red?\nA. sky\nB. apple\nC. grass" + CUE
    assert out.examples[1].prompt.startswith("Some context.\nPick two\nA. one\nB. two")
    assert out.n_skipped == 5 and out.skipped["options unreadable"] == 1
    assert out.skipped["answer missing or not one of the options"] == 2


def test_parse_options_needs_letters_in_order():
    assert parse_options("(A) x\n(B) y") == ["x", "y"]
    assert parse_options("B. x\nA. y") is None and parse_options("A. only") is None and parse_options(3) is None


def test_chat_items_become_plain_prompts():
    rows = [
        {"input": [{"role": "system", "content": "Reply 1 or 0."}, {"role": "user", "content": "a headline"}], "ideal": "1"},
        {"input": "a plain string input", "ideal": ["first", "second"]},  # a list: the first counts
        {"input": [{"role": "user", "content": "  "}], "ideal": "x"},  # no usable message
        {"input": [{"role": "user", "content": "q"}], "ideal": ""},  # no ideal
        {"input": [{"role": "user", "content": "q"}], "ideal": []},
        {"input": ["not a message"], "ideal": "x"},
    ]
    out = chat_items(rows)
    assert [(e.prompt, e.answer) for e in out.examples] == [("Reply 1 or 0.\n\na headline" + CUE, "1"),
                                                             ("a plain string input" + CUE, "first")]
    assert out.skipped == {"no input messages": 2, "no ideal answer": 2}


def test_numeric_items_keep_the_leading_number():
    rows = [{"passage": "Ann has 3 cats.", "question": "How many legs?", "answer": "12 legs"},
            {"passage": "p", "question": "Total?", "answer": "1,200 (cm)"},
            {"passage": "p", "question": "Half?", "answer": "0.5"},
            {"passage": "p", "question": "Ratio?", "answer": "2:3"},  # "2" (the leading number)
            {"passage": "p", "question": "Which?", "answer": "the red one"},  # skipped
            {"passage": "", "question": "", "answer": "3"}]  # skipped
    out = numeric_items(rows)
    assert [e.answer for e in out.examples] == ["12", "1200", "0.5", "2"]
    assert out.examples[0].prompt == "Ann has 3 cats. How many legs?" + CUE
    assert out.skipped == {"answer does not start with a number": 1, "no question text": 1}
    assert leading_number("-3 / 4 cup") == "-3/4" and leading_number(".5") == ".5" and leading_number(None) is None


def test_labelled_items_map_labels_and_skip_unknown_ones():
    rows = [{"passage": "P1", "question": "q1", "answer": "True"}, {"passage": "P2", "question": "q2", "answer": False},
            {"passage": "P3", "question": "q3", "answer": "maybe"}, {"passage": "P4", "answer": "True"}]
    out = labelled_items(rows, labels={"True": "yes", "False": "no"})
    assert [(e.prompt, e.answer) for e in out.examples] == [("P1\nq1" + CUE, "yes"), ("P2\nq2" + CUE, "no")]
    assert out.skipped == {"label missing or unknown": 1, "a text field is missing": 1}


CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O
. . O O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER
met VBD B-VP O
New NNP B-NP I-LOC
York NNP I-NP I-LOC

nothing NN B-NP O
here RB O O

broken
line NN B-NP O

bad NN B-NP X-TAG
"""


def test_conll_columns_become_an_extraction_task():
    sentences, counts = read_conll(CONLL)
    assert len(sentences) == 3 and counts.skipped == {"malformed line": 2}
    assert entities(sentences[1]) == [("Peter Blackburn", "PER"), ("New York", "LOC")]  # IOB1: I- opens an entity
    out = conll_extraction(CONLL)
    assert [e.answer for e in out.examples] == ["EU (ORG), German (MISC)", "Peter Blackburn (PER), New York (LOC)"]
    assert out.examples[0].prompt == "Sentence: EU rejects German call .\nNamed entities:"
    assert out.skipped == {"malformed line": 2, "no entity": 1}


def test_two_adjacent_entities_of_one_type_stay_apart():
    assert entities([("A", "B-PER"), ("B", "B-PER"), ("C", "I-PER")]) == [("A", "PER"), ("B C", "PER")]


def test_converters_never_raise_on_junk():
    junk = [None, 3, [], {"question": 5, "options": {"A": 1}, "answer": ["A"]}, {"input": 7, "ideal": 8},
            {"passage": ["x"], "question": None, "answer": {"n": 1}}]
    for fn in (multiple_choice, chat_items, numeric_items, labelled_items):
        out = fn(junk)
        assert out.examples == [] and out.n_skipped == len(junk), fn.__name__
    assert conll_extraction("\n\n  \n").examples == [] and conll_extraction(json.dumps(junk)).examples == []
