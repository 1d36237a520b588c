import pytest
import torch

from seta.data import build_tiny_tokenizer, synthetic_stream
from seta.models import build_tiny_model


@pytest.fixture(scope="session")
def tok():
    return build_tiny_tokenizer()


@pytest.fixture(scope="session")
def tasks():
    return list(synthetic_stream(seed=0, n_train=24, n_eval=6, n_test=6))[:3]


@pytest.fixture
def make_base(tok):
    def make(seed=0):
        torch.manual_seed(seed)
        return build_tiny_model("llama", tokenizer=tok, seed=0)
    return make


