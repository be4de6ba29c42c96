"""Multi-GPU validation: NCCL collectives, tensor-, pipeline- and expert-parallel decoders, DDP/FSDP
training steps, measured on one multi-GPU host and re-predicted by roofsim on a CPU.

One script per kind (``collectives``, ``tp``, ``pp``, ``ep``, ``dp``); ``python -m validation.multigpu``
runs them (``launch``), ``repredict`` compares their results with the cost model. docs/validation.md
("Multi-GPU validation") has the commands and the targets.
"""

SCRIPTS = ("collectives", "tp", "pp", "ep", "dp")
