"""TrainConfig.answer_prefix: the text joined before every answer in training and in its budget."""

from seta.data import Example
from seta.train.batching import encode_examples
from seta.train.config import TrainConfig


def test_answer_prefix_goes_between_prompt_and_answer_and_only_the_answer_is_labelled(tok):
    ex = [Example("Q: capital of France?\nA:", "Paris")]
    plain = encode_examples(tok, ex, TrainConfig())[0]
    spaced = encode_examples(tok, ex, TrainConfig(answer_prefix=" "))[0]
    prompt = list(tok("Q: capital of France?\nA:")["input_ids"])
    answer = list(tok(" Paris", add_special_tokens=False)["input_ids"]) + [tok.eos_token_id]
    assert spaced["input_ids"] == prompt + answer
    assert spaced["labels"] == [-100] * len(prompt) + answer
    assert plain["input_ids"] != spaced["input_ids"]  # the default joins them as they are
    assert tok.decode(spaced["input_ids"][len(prompt):-1]) == " Paris"
