"""Training validation on a GPU: training-kernel calibration (``kernels``) and real training steps of a
Llama-style torch model (``model``, ``steps``) timed against ``simulator.train``; ``fit`` turns the
kernel measurements into profile kinds and ``report`` re-predicts recorded steps on any machine."""
