"""Hypothesis mutates adapter cards, config files and prompt lines: whatever it writes, the readers raise
ValueError (the boundary's one `Error:` line), never another exception."""

from __future__ import annotations

import json
import os
import shutil

from hypothesis import HealthCheck, given, settings, strategies as st

from seta.inference.card import CARD_NAME

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3),
                    max_leaves=8)
FUZZ = settings(max_examples=int(os.environ.get("SETA_FUZZ_EXAMPLES", "60")), deadline=None,  # more: a longer hunt
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


def _replace(value, path, new):
    if not path:
        return new
    if isinstance(value, dict):
        return {**value, path[0]: _replace(value[path[0]], path[1:], new)}
    return [_replace(v, path[1:], new) if i == path[0] else v for i, v in enumerate(value)]


@FUZZ
@given(data=st.data())
def test_any_card_mutation_is_loaded_or_refused_with_a_value_error(tiny_adapter, tmp_path_factory, data):
    from seta.inference.adapter_files import check_adapter
    from seta.inference.card import card_routing, read_card
    from seta.inference.deploy import adapter_info

    d = tmp_path_factory.mktemp("card") / "adapter"
    shutil.copytree(tiny_adapter["dir"], d)
    card = json.loads((d / CARD_NAME).read_text())
    path = data.draw(st.sampled_from(list(_paths(card))))
    card = _replace(card, path, data.draw(JSON))
    (d / CARD_NAME).write_text(json.dumps(card))
    try:
        card = read_card(d)
        check_adapter(d, card)
        card_routing(card)
        adapter_info(d)
    except ValueError:
        pass


SECTION = st.sampled_from(["train", "sparse", "seta", "gate", "ewc", "lwf", "bogus"])
FIELD = st.sampled_from(["lr", "epochs", "block_size", "ratio", "target_modules", "steps", "routing", "soft_k", "x"])


@FUZZ
@given(doc=st.dictionaries(SECTION, st.dictionaries(FIELD, JSON, max_size=3) | JSON, max_size=3),
       as_yaml=st.booleans(), sets=st.lists(st.tuples(SECTION, FIELD, st.text(max_size=6)), max_size=2))
def test_any_config_is_applied_or_refused_with_a_config_error(tmp_path_factory, doc, as_yaml, sets):
    import yaml

    from seta.experiment.presets import QUICK
    from seta.train.run_config import ConfigError, read_config_file, resolve

    f = tmp_path_factory.mktemp("cfg") / ("run.yaml" if as_yaml else "run.json")
    f.write_text(yaml.safe_dump(doc) if as_yaml else json.dumps(doc))
    try:
        resolve(QUICK.settings(), read_config_file(f), [f"{s}.{k}={v}" for s, k, v in sets], source=str(f))
    except ConfigError:
        pass


@FUZZ
@given(lines=st.lists(st.text(max_size=20) | JSON.map(json.dumps) |
                      st.text(max_size=10).map(lambda t: json.dumps({"prompt": t})), max_size=4))
def test_any_prompt_file_is_read_or_refused_with_a_value_error(tmp_path_factory, lines):
    from seta.inference.prompts import read_prompts_jsonl

    f = tmp_path_factory.mktemp("jsonl") / "p.jsonl"
    f.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass"))
    try:
        rows = read_prompts_jsonl(str(f))
    except ValueError:
        return
    assert all(isinstance(r["prompt"].encode("utf-8"), bytes) for r in rows)  # every prompt read is UTF-8 text
