"""SETA in a plain PyTorch loop: learn two tasks one after the other, then generate without a task id.

    python examples/train_loop.py [--out DIR]     # a tiny random Llama + the synthetic stream, CPU, seconds

With your own model: base = AutoModelForCausalLM.from_pretrained(...); the loss, data and optimiser are yours.
"""
import sys

import torch

from seta import SetaConfig, get_seta_model
from seta.data import build_tiny_tokenizer, collate_train, encode_example, generation_batch, synthetic_stream
from seta.models import build_tiny_model
from seta.train.gate_training import GateTrainConfig

tok = build_tiny_tokenizer()
base = build_tiny_model("llama", tokenizer=tok, seed=0)
config = SetaConfig(block_size=16, ratio=0.1, probe_batches=2, fisher_batches=2, gate=GateTrainConfig(steps=50))
model = get_seta_model(base, config, tokenizer=tok)
stream = list(synthetic_stream(seed=0, order=["FOMC", "C-STANCE"], n_train=32, n_eval=4, n_test=4))

for task in stream:
    data = [collate_train([encode_example(tok, e.prompt, e.answer) for e in task.train[i : i + 8]], tok.pad_token_id)
            for i in range(0, len(task.train), 8)]  # input_ids, attention_mask, labels (-100 on the prompt)
    opt = torch.optim.AdamW(model.start_task(task.name, data), lr=1e-2)  # probe, allocate: S_t's blocks
    model.print_trainable_parameters()
    for batch in data:
        loss = model(**batch).loss + model.anchor_penalty()  # your loss + SETA's anchoring
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.end_task(data, [e.prompt for e in task.train])  # Fisher, anchors, routing statistics, gate

inputs = generation_batch(tok, [task.test[0].prompt for task in stream])
out = model.generate(**inputs, max_new_tokens=8, do_sample=False)  # routed by the gate, no task id
print(tok.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
model.save_pretrained(sys.argv[sys.argv.index("--out") + 1] if "--out" in sys.argv else "seta-adapter")
