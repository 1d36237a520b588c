import pytest
import torch

from api_helpers import CONFIG, fresh_base, train_task
from seta import get_seta_model
from seta.data import build_tiny_tokenizer, synthetic_stream


@pytest.fixture(scope="session")
def tok():
    return build_tiny_tokenizer()


@pytest.fixture(scope="session")
def stream():
    return list(synthetic_stream(seed=0, order=["FOMC", "C-STANCE"], n_train=24, n_eval=4, n_test=4))


@pytest.fixture(scope="session")
def trained(tok, stream):
    """The tiny Llama with SETA after both tasks, and the anchoring penalty seen before each step of each task."""
    torch.manual_seed(0)
    model = get_seta_model(fresh_base(tok), CONFIG, tokenizer=tok)
    penalties = {}
    for task in stream:
        penalties[task.name] = []
        train_task(model, tok, task, record=penalties[task.name])
    model.eval()
    return model, penalties
