"""A saved SETA adapter as an lm-evaluation-harness model: ``--model seta --model_args adapter=DIR``.

    seta-lm-eval --model seta --model_args adapter=results/tiny/seta/seed0/adapter --tasks piqa
    python -m seta.inference.harness_model --model seta --model_args adapter=DIR,batch_size=16 --tasks ...

    import seta.inference.harness_model                  # registers "seta" with lm-eval
    lm_eval.simple_evaluate(model="seta", model_args="adapter=DIR", tasks=[...])

`SetaLM` loads the adapter with its base in one call (`seta.inference.SetaAdapter.load`: base and
tokenizer from the adapter's card, the base checked against the hashes it records) and is a
`seta.eval.harness.RoutedLM`: every forward and ``generate`` of lm-eval is routed the way the trained
method routes at inference, per prompt batch, without a task id (the gate's top-1 or soft top-k over
the adapter's experts, or the null expert, i.e. the base alone, for prompts far from every task).

Model args: ``adapter`` (required), ``base`` (another copy of the base, checked against the card),
``batch_size`` (lm-eval's ``--batch_size``; ``auto`` = 8), ``max_length`` (default: the model's
positions), ``max_gen_toks`` (256), ``routing`` (``top1`` or ``soft``; default: the adapter's),
``task`` (route every prompt to this task's expert instead of the gate); ``--device`` moves the model
there unless it is already placed (``auto``) or names CUDA on a machine without it.

Registration, three ways. (1) The package declares the entry point ``seta`` in lm-eval's plugin group
``lm_eval.models`` (pyproject.toml): an lm-eval with plugin discovery (upstream's docs/plugins.md,
after 0.4.13) then resolves ``lm_eval --model seta`` by itself. (2) lm-eval 0.4.13, the latest release
(seta pins <0.5), does not read that group: it finds models only in its own built-in table, so
``seta-lm-eval`` is lm-eval's own command line with this module imported first, every lm-eval option
and task as with ``lm_eval``. (3) Importing this module registers ``seta``
(`lm_eval.api.registry.register_model`) for ``lm_eval.simple_evaluate``.
"""

from __future__ import annotations

from lm_eval.api.registry import register_model

from seta.eval.harness import RoutedLM


def _int_or(value, default: int) -> int:
    if value is None or (isinstance(value, str) and value.startswith("auto")):
        return default
    return int(value)


def _wanted_device(device, current, placed: bool = False):
    """lm-eval's --device (its default: cuda) when it names another usable device, else None (stay put:
    a base loaded with device_map='auto' is already placed; without CUDA the model stays on the CPU)."""
    import torch

    if device in (None, "", "auto") or placed:
        return None
    want = torch.device(device)
    if want.type == current.type and want.index in (None, current.index):
        return None
    if want.type == "cuda" and not torch.cuda.is_available():
        return None
    return want


@register_model("seta")
class SetaLM(RoutedLM):
    """lm-eval model over a saved SETA adapter (see the module docstring for the model args)."""

    def __init__(self, adapter: str | None = None, base: str | None = None, batch_size=8, max_length=None,
                 max_gen_toks=256, routing: str | None = None, task: str | None = None, device=None,
                 progress: bool = True, **unused):
        from seta.inference.adapter import SetaAdapter

        if adapter is None:
            raise ValueError("--model seta needs --model_args adapter=DIR (a folder saved by seta run / seta train)")
        unknown = sorted(k for k in unused if k not in ("max_batch_size", "dtype", "trust_remote_code"))
        if unknown:
            raise ValueError(f"unknown model_args {unknown} for --model seta; known: adapter, base, batch_size, "
                             "max_length, max_gen_toks, routing, task")
        self.adapter = SetaAdapter.load(adapter, base=base)
        seta = self.adapter.seta
        target = _wanted_device(device, seta.device, placed=getattr(seta.model, "hf_device_map", None) is not None)
        if target is not None:
            seta.to(target)
        if routing is not None:
            if routing not in ("top1", "soft"):
                raise ValueError(f"routing={routing!r}: choose top1 or soft (to route by task, use task=NAME)")
            self.adapter.mode = routing
        self.forced = None if task is None else self.adapter.task_index(task)
        gate_route, clear = self.adapter.route_callbacks()  # the gate, as SetaAdapter.generate routes

        def route(input_ids, attention_mask):
            if self.forced is None:
                gate_route(input_ids, attention_mask)
            else:
                seta.set_routing(seta.router.oracle([self.forced] * input_ids.shape[0]))

        super().__init__(seta, self.adapter.tokenizer, route=route, clear=clear,
                         batch_size=_int_or(batch_size, 8), max_length=None if max_length is None else int(max_length),
                         max_gen_toks=int(max_gen_toks), progress=progress)


def main() -> None:
    """``seta-lm-eval``: lm-eval's command line with the ``seta`` model registered, inside the package's error
    boundary (a damaged or missing adapter: one ``Error: ...`` line, exit 1)."""
    import click

    from seta.experiment.failures import error_boundary

    @error_boundary
    def evaluate():
        from lm_eval.__main__ import cli_evaluate

        cli_evaluate()

    try:
        evaluate()
    except click.ClickException as err:
        err.show()
        raise SystemExit(err.exit_code) from None


if __name__ == "__main__":
    main()
