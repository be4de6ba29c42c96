"""Training: one step's time, memory, MFU/HFU and time to train (``api.train``, ``api.train_sweep``), and
the layout planner (``plan.plan_train``). Operators in ``ops``, memory terms in ``memory``, the step's
composition in ``engine``; formulas in ``costmodels``. See docs/training.md."""
