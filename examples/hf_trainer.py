"""SETA with Hugging Face `Trainer`: a stream of two tasks, one `Trainer.train()` per task.

    python examples/hf_trainer.py [--out DIR]     # a tiny random Llama + the synthetic stream, CPU, seconds

`SetaTrainer.compute_loss` adds SETA's anchoring penalty to the Trainer's loss; each task's optimiser gets
the parameters `start_task` returns (the task's blocks), and `end_task` runs after `train()`.
"""
import sys
import tempfile

import torch
from transformers import Trainer, TrainingArguments

from seta import SetaConfig, get_seta_model
from seta.data import TrainCollator, build_tiny_tokenizer, generation_batch, synthetic_stream, tokenize_examples
from seta.models import build_tiny_model
from seta.train.gate_training import GateTrainConfig


class SetaTrainer(Trainer):
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = super().compute_loss(model, inputs, True, num_items_in_batch)
        loss = loss + model.anchor_penalty()  # once per micro-batch: keep gradient_accumulation_steps=1
        return (loss, outputs) if return_outputs else loss


tok = build_tiny_tokenizer()
model = get_seta_model(build_tiny_model("llama", tokenizer=tok, seed=0), tokenizer=tok,
                       config=SetaConfig(block_size=16, ratio=0.1, probe_batches=2, fisher_batches=2,
                                         gate=GateTrainConfig(steps=50)))
collate = TrainCollator(tok.pad_token_id)
args = TrainingArguments(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=8, num_train_epochs=1,
                         learning_rate=1e-2, lr_scheduler_type="constant", save_strategy="no", report_to="none",
                         logging_strategy="no", disable_tqdm=True, use_cpu=True)
stream = list(synthetic_stream(seed=0, order=["FOMC", "C-STANCE"], n_train=32, n_eval=4, n_test=4))
for task in stream:
    dataset = tokenize_examples(tok, task.train)  # input_ids, labels (-100 on the prompt)
    batches = list(torch.utils.data.DataLoader(dataset, batch_size=8, collate_fn=collate))
    params = model.start_task(task.name, batches)  # probe, allocate, anchors: the task's blocks
    optimizer = torch.optim.AdamW(params, lr=args.learning_rate)
    SetaTrainer(model=model, args=args, train_dataset=dataset, data_collator=collate,
                optimizers=(optimizer, None)).train()
    model.end_task(batches, [e.prompt for e in task.train])  # Fisher, anchors, routing statistics, gate

inputs = generation_batch(tok, [task.test[0].prompt for task in stream])
out = model.generate(**inputs, max_new_tokens=8, do_sample=False)  # routed by the gate, no task id
print(tok.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
model.save_pretrained(sys.argv[sys.argv.index("--out") + 1] if "--out" in sys.argv else "seta-adapter")
