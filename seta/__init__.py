"""SETA: Split-on-Share mixture of sparse experts for task-agnostic continual learning.

Layers (an import only points down):
    seta.core    framework-free maths on tensors (blocks, sensitivity, allocation,
                 anchoring, routing statistics, continual metrics)
    seta.data    task streams, TRACE loader, synthetic stream, tokenisation
    seta.models  sparse block experts on Hugging Face causal LMs, the gate, I/O
    seta.eval    task scorers and reports
    seta.train   the continual loop, SETA and baseline strategies
"""

__version__ = "0.1.0"
