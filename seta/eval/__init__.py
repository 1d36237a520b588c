"""seta.eval: task scorers, greedy generation, continual metrics and run reports.

Modules (import what you need; none is imported here, so ``import seta.eval`` stays cheap):

- `seta.eval.scorers`: ``score(metric, predictions, references, sources=None)``, ``SCORERS``
- `seta.eval.generate`: ``generate(model, tokenizer, prompts, ...)`` batched greedy decoding
- `seta.eval.continual`: ``r_matrix``, ``continual_metrics``, ``aggregate_seeds``, routing accuracy
- `seta.eval.report`: ``MethodResult``, ``write_report`` (summary.json, summary.md, plots)
- `seta.eval.summary` / `seta.eval.markdown`: the report's data and summary.json / its tables
- `seta.eval.harness`: lm-eval adapter ``RoutedLM``, ``general_ability`` (needs lm-eval);
  `seta.eval.general_data`: the local MMLU/BBH/PIQA files; `seta.eval.harness_tasks`: the lm-eval tasks
- `seta.eval.plots`: the PNG figures
"""
