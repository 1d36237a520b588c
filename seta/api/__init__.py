"""SETA as a library, in peft's style: one config, one call that attaches the method to your model.

    from seta import SetaConfig, get_seta_model
    model = get_seta_model(base, SetaConfig(block_size=16, ratio=0.1), tokenizer=tok)

`SetaConfig` (seta.api.config) holds every setting of the method; `get_seta_model` returns a
`SetaContinualModel` (seta.api.model) with start_task / anchor_penalty / end_task, routed forward and
generate, save_pretrained / from_pretrained, merge_and_unload and print_trainable_parameters (docs/api.md).
"""

from seta.api.config import SetaConfig, SetaOwnConfig
from seta.api.model import METHOD_NAME, SetaContinualModel, get_seta_model

__all__ = ["SetaConfig", "SetaOwnConfig", "SetaContinualModel", "get_seta_model", "METHOD_NAME"]
