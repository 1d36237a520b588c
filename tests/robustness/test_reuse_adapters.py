"""Adapters from every kind of run can be scored (`seta eval`) and grown (`seta train --from`) again: the
card records the stream's sources in a form the loader accepts (synthetic stream: tests/cli; a stream
directory: here, with the adapter grown from it scored and grown once more)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from seta.cli import main
from seta.inference.card import CARD_NAME


def _ok(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.slow
def test_adapters_of_a_stream_directory_are_scored_and_grown(tiny_adapter):
    from seta.data import Stream, synthetic_stream, write_trace

    root = tiny_adapter["run"].parent  # the session adapter's cache of the tiny base sits next to it
    data = root / "stream"
    tasks = list(synthetic_stream(seed=0, order=["FOMC", "C-STANCE", "MeetingBank"], n_train=24, n_eval=4, n_test=4))
    write_trace(Stream(tasks, name="three"), data)
    _ok("train", "--quick", "--data-dir", data, "--tasks", "FOMC,C-STANCE", "--out", root / "dd", "--no-progress")
    adapter = root / "dd" / "adapter"
    source = json.loads((adapter / CARD_NAME).read_text())["tasks"][0]["source"]
    assert source == {"data_dir": str(data.resolve()), "load": {}, "seed": 0}
    assert "R row (adapter's task order)" in _ok("eval", adapter)  # its own stream, from the card

    _ok("train", "--from", adapter, "--tasks", "MeetingBank", "--data-dir", data, "--out", root / "grown", "--no-progress")
    grown = json.loads(_ok("eval", root / "grown" / "adapter", "--json"))
    assert set(grown["scores"]) == {"FOMC", "C-STANCE", "MeetingBank"} and None not in grown["R_row"]

    # a card written before the fix recorded the synthetic stream's sizes as the loader's arguments
    card = json.loads((adapter / CARD_NAME).read_text())
    for t in card["tasks"]:
        t["source"]["load"] = {"n_train": 120, "n_eval": 16, "n_test": 16}
    (adapter / CARD_NAME).write_text(json.dumps(card))
    assert set(json.loads(_ok("eval", adapter, "--json"))["scores"]) == {"FOMC", "C-STANCE"}
