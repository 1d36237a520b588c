"""lm-eval tasks over the local general-ability data: one `ConfigurableTask` per subset, with the
prompts, few-shot sampling, generation settings and metrics of lm-eval's stock ``mmlu``,
``bbh_fewshot`` and ``piqa`` tasks."""

from __future__ import annotations

from seta.eval.general_data import Subset

__all__ = ["HEADLINE", "MMLU_PROMPT", "BBH_STOP", "build_task"]

HEADLINE = {"mmlu": "acc", "bbh": "exact_match", "piqa": "acc_norm"}
MMLU_PROMPT = "{{question.strip()}}\nA. {{choices[0]}}\nB. {{choices[1]}}\nC. {{choices[2]}}\nD. {{choices[3]}}\nAnswer:"
BBH_STOP = ["</s>", "Q", "\n\n"]  # the stock bbh_fewshot stop strings


def build_task(s: Subset, k: int, max_gen_toks: int | None):
    """The lm-eval task of one subset, scored on its eval docs with k shots (first k of its few-shot docs)."""
    import datasets
    from lm_eval.api.task import ConfigurableTask

    splits = {"eval": datasets.Dataset.from_list(s.eval_docs)}
    if s.fewshot_docs:
        splits["shots"] = datasets.Dataset.from_list(s.fewshot_docs)
    cfg = dict(task=f"{s.benchmark}_{s.name}", custom_dataset=lambda **_: datasets.DatasetDict(splits),
               test_split="eval", num_fewshot=k, description=s.description, metadata={"version": 1.0})
    mean = lambda m: {"metric": m, "aggregation": "mean", "higher_is_better": True}  # noqa: E731
    if s.benchmark == "mmlu":
        cfg.update(output_type="multiple_choice", doc_to_choice=["A", "B", "C", "D"], doc_to_target="answer",
                   doc_to_text=MMLU_PROMPT,
                   metric_list=[mean("acc")])
    elif s.benchmark == "piqa":
        cfg.update(output_type="multiple_choice", doc_to_text="Question: {{goal}}\nAnswer:", doc_to_target="label",
                   doc_to_choice="{{[sol1, sol2]}}", metric_list=[mean("acc"), mean("acc_norm")])
    else:
        gen = {"until": BBH_STOP, "do_sample": False, "temperature": 0.0}
        if max_gen_toks is not None:
            gen["max_gen_toks"] = max_gen_toks
        cfg.update(output_type="generate_until", doc_to_text="Q: {{input}}\nA:", doc_to_target="{{target}}",
                   generation_kwargs=gen, metric_list=[mean("exact_match")],
                   filter_list=[{"name": "strip", "filter": [{"function": "remove_whitespace"},
                                                             {"function": "take_first"}]}])
    if s.fewshot_docs:
        cfg.update(fewshot_split="shots", fewshot_config={"sampler": "first_n"})
    return ConfigurableTask(config=cfg)
