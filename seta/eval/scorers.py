"""Per-task scorers on a 0-100 scale, dispatched by metric key.

Every scorer maps one (prediction, reference[, source]) triple to a number in
[0, 100]; `score` averages over the examples. Keys (the metric names a task
stream declares):

- ``exact_match``: 100 if ``pred.strip() == ref.strip()``.
- ``first_char``: ScienceQA accuracy; 100 if the first non-space character of
  the prediction equals the reference's first non-space character.
- ``rouge_l``: ROUGE-L F1 on whitespace tokens,
  ``P = LCS/|pred|, R = LCS/|ref|, F = 2PR/(P+R)``.
- ``edit_sim``: Py150 edit similarity after TRACE's literal normalisation,
  the InDel (Levenshtein without substitutions) ratio used by ``fuzz.ratio``:
  ``100 * 2M / T`` with ``M`` the character LCS length and ``T`` the total
  length. Computed exactly (bit-parallel LCS), not with difflib's heuristic
  matcher, so it does not depend on difflib's autojunk rule.
- ``numeric``: 100 if the prediction starts with the reference's number (commas ignored,
  ``a/b`` read as a fraction; equal within a relative 1e-6), so "12.0 apples" matches "12";
  a reference that is not a number falls back to exact match.
- ``sari``: SARI (Xu et al., 2016) on whitespace tokens, n = 1..4:
  ``(F_keep + P_del + F_add) / 3``; needs the sources. Without sources it
  falls back to ROUGE-L and warns (a documented deviation).

Conventions: two empty strings are identical (100); an empty prediction
against a non-empty reference scores 0. Tokenisation is whitespace, case is
kept. A reference may be a string or a list of strings (several references);
for every metric but SARI, the best reference counts.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from collections.abc import Callable, Hashable, Sequence

Reference = str | Sequence[str]


# --------------------------------------------------------------------------- LCS
def lcs_length_reference(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Longest common subsequence length by the textbook O(|a||b|) DP (slow reference)."""
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def lcs_length(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """LCS length, bit-parallel over ``a`` (Allison-Dix / Hyyro), O(|b| * |a|/64).

    Bit i of V is 0 where row i of the DP increases; per symbol y of b with
    match mask M_y: ``U = V & M_y; V = (V + U) | (V - U)``; LCS = zeros of V.
    """
    if not a or not b:
        return 0
    full = (1 << len(a)) - 1
    masks: dict[Hashable, int] = {}
    for i, x in enumerate(a):
        masks[x] = masks.get(x, 0) | (1 << i)
    v = full
    for y in b:
        u = v & masks.get(y, 0)
        v = ((v + u) | (v - u)) & full
    return len(a) - bin(v).count("1")


# ---------------------------------------------------------------- single scores
def exact_match(pred: str, ref: str) -> float:
    return 100.0 if pred.strip() == ref.strip() else 0.0


def first_char(pred: str, ref: str) -> float:
    return 100.0 if pred.strip()[:1] == ref.strip()[:1] else 0.0


def rouge_l(pred: str, ref: str) -> float:
    """ROUGE-L F1 (beta = 1) on whitespace tokens, times 100."""
    p, r = pred.split(), ref.split()
    if not p and not r:
        return 100.0
    m = lcs_length(p, r)
    if m == 0:
        return 0.0
    precision, recall = m / len(p), m / len(r)
    return 100.0 * 2 * precision * recall / (precision + recall)


_LIT = re.compile(r"<(?:STR|NUM|CHAR)_LIT:(.*?)>", re.S)


def normalise_py150(code: str) -> str:
    """TRACE's Py150 post-processing: ``<NUM_LIT>`` -> ``0``, drop ``<STR_LIT>``
    and ``<CHAR_LIT>``, unwrap ``<STR_LIT:x>`` (and NUM/CHAR) -> ``x``, strip."""
    code = code.replace("<NUM_LIT>", "0").replace("<STR_LIT>", "").replace("<CHAR_LIT>", "")
    return _LIT.sub(lambda m: m.group(1), code).strip()


def edit_sim(pred: str, ref: str) -> float:
    """InDel similarity ``100 * 2 * LCS / (|pred| + |ref|)`` on normalised code."""
    p, r = normalise_py150(pred), normalise_py150(ref)
    if not p and not r:
        return 100.0
    return 100.0 * 2 * lcs_length(p, r) / (len(p) + len(r))


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _f1(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def _sari_ngram(s: Counter, c: Counter, refs: list[Counter]) -> tuple[float, float, float]:
    """(F_keep, P_del, F_add) for one n-gram order (Xu et al., 2016).

    With m references, source/candidate counts are scaled by m and
    ``r(g) = sum_k count_k(g)``:
    keep: ``kept = m*min(s, c)``, ``good = min(kept, r)``, ``all = min(m*s, r)``;
      P = mean_{kept>0} good/kept, R = sum good / sum all (the tensor2tensor
      correction of the original per-gram recall, as in HF ``evaluate``).
    delete: ``del = m*max(s - c, 0)``, ``good = max(del - r, 0)``;
      P = mean_{del>0} good/del.
    add (sets): ``A = C - S``, ``G = A & R``, ``all = R - S``; P = |G|/|A|, R = |G|/|all|.
    An empty denominator counts as 1 (nothing to do, nothing done wrong).
    """
    m = len(refs)
    r: Counter = Counter()
    for ref in refs:
        r.update(ref)

    kept = {g: m * min(s[g], c[g]) for g in s if c[g] > 0}
    good = {g: min(k, r[g]) for g, k in kept.items()}
    keep_all = sum(min(m * s[g], r[g]) for g in s)
    keep_p = sum(good[g] / k for g, k in kept.items()) / len(kept) if kept else 1.0
    keep_r = sum(good.values()) / keep_all if keep_all else 1.0

    deleted = {g: m * (s[g] - c[g]) for g in s if s[g] > c[g]}
    del_p = sum(max(d - r[g], 0) / d for g, d in deleted.items()) / len(deleted) if deleted else 1.0

    added = set(c) - set(s)
    add_all = set(r) - set(s)
    add_good = added & add_all
    add_p = len(add_good) / len(added) if added else 1.0
    add_r = len(add_good) / len(add_all) if add_all else 1.0
    return _f1(keep_p, keep_r), del_p, _f1(add_p, add_r)


def sari(source: str, pred: str, refs: Sequence[str]) -> float:
    """Sentence SARI, times 100: ``(mean_n F_keep + mean_n P_del + mean_n F_add) / 3``, n = 1..4."""
    if isinstance(refs, str):
        refs = [refs]
    if not refs:
        raise ValueError("sari needs at least one reference per example")
    st, ct, rts = source.split(), pred.split(), [x.split() for x in refs]
    keep = dele = add = 0.0
    for n in range(1, 5):
        k, d, a = _sari_ngram(_ngrams(st, n), _ngrams(ct, n), [_ngrams(t, n) for t in rts])
        keep, dele, add = keep + k, dele + d, add + a
    return 100.0 * (keep + dele + add) / 12.0


_NUMBER = re.compile(r"^\s*([-+]?(?:\d[\d,]*(?:\.\d+)?|\.\d+))(?:\s*/\s*(\d+))?")


def _as_number(text: str) -> float | None:
    m = _NUMBER.match(text)
    if not m:
        return None
    value = float(m.group(1).replace(",", ""))
    if m.group(2) is not None:
        return value / float(m.group(2)) if float(m.group(2)) else None
    return value


def numeric(pred: str, ref: str) -> float:
    """Numbers compared as numbers: 100 if ``pred`` starts with ``ref``'s value (see the module docstring)."""
    want = _as_number(ref)
    if want is None:
        return exact_match(pred, ref)
    got = _as_number(pred)
    return 100.0 if got is not None and abs(got - want) <= 1e-6 * max(1.0, abs(want)) else 0.0


# ------------------------------------------------------------------- dispatch
PairScorer = Callable[[str, str], float]

SCORERS: dict[str, PairScorer] = {
    "exact_match": exact_match,
    "first_char": first_char,
    "rouge_l": rouge_l,
    "edit_sim": edit_sim,
    "numeric": numeric,
    "sari": rouge_l,  # pair form used only as the fallback when sources are missing
}
"""Metric key -> per-example scorer ``f(prediction, reference) -> [0, 100]``.
SARI also needs the source; `score` routes it to `sari` when sources are given."""


def _best(fn: PairScorer, pred: str, ref: Reference) -> float:
    if isinstance(ref, str):
        return fn(pred, ref)
    if not ref:
        raise ValueError("empty reference list: give at least one reference string per example")
    return max(fn(pred, r) for r in ref)


def score_each(
    metric: str,
    predictions: Sequence[str],
    references: Sequence[Reference],
    sources: Sequence[str] | None = None,
) -> list[float]:
    """Per-example scores in [0, 100] (see `score`)."""
    if metric not in SCORERS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {sorted(SCORERS)}")
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references: give one reference per prediction")
    if sources is not None and len(sources) != len(predictions):
        raise ValueError(f"{len(sources)} sources for {len(predictions)} predictions: give one source per prediction")
    if metric == "sari":
        if sources is not None:
            return [sari(s, p, r) for s, p, r in zip(sources, predictions, references)]
        warnings.warn("sari without sources: falling back to ROUGE-L (documented deviation)", stacklevel=3)
    fn = SCORERS[metric]
    return [_best(fn, p, r) for p, r in zip(predictions, references)]


def score(
    metric: str,
    predictions: Sequence[str],
    references: Sequence[Reference],
    sources: Sequence[str] | None = None,
) -> float:
    """Mean per-example score in [0, 100] under ``metric`` (a key of `SCORERS`).

    ``references[i]`` is a string or a list of strings; ``sources`` (the text
    to simplify) is used by ``sari`` only. Empty inputs are an error.
    """
    if len(predictions) == 0:
        raise ValueError("no predictions to score: the evaluation set is empty")
    each = score_each(metric, predictions, references, sources)
    return sum(each) / len(each)
