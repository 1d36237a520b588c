"""seta.eval: task scorers, greedy generation, continual metrics and run reports.

Modules (import what you need; none is imported here, so ``import seta.eval`` stays cheap):

- `seta.eval.scorers`: ``score(metric, predictions, references, sources=None)``, ``SCORERS``
- `seta.eval.generate`: ``generate(model, tokenizer, prompts, ...)`` batched greedy decoding
- `seta.eval.continual`: ``r_matrix``, ``continual_metrics``, ``aggregate_seeds``, routing accuracy
- `seta.eval.report`: ``MethodResult``, ``write_report`` (summary.json, summary.md, plots)
- `seta.eval.plots`: the PNG figures
"""
