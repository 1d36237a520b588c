import pytest

from seta.data import build_tiny_tokenizer


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory):
    """The tiny tokenizer, built once per session into a temporary directory (not the user cache)."""
    return build_tiny_tokenizer(tmp_path_factory.mktemp("tok") / "tiny")
