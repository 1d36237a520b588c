import pytest

from models_helpers import VARIANT_IDS, VARIANTS


@pytest.fixture(params=VARIANTS, ids=VARIANT_IDS)
def variant(request):
    """(arch, nf4) for tiny Llama and Qwen3 in fp32 and 4-bit NF4."""
    return request.param
