"""Stack profiles: calibrate roofsim to the implementation a user runs (``docs/calibration.md``).

* :mod:`~simulator.stacks.profile` -- the data model (pydantic, JSON);
* :mod:`~simulator.stacks.presets` -- implementations read off known stacks' code;
* :mod:`~simulator.stacks.transform` -- corrected profile, operator transform, host pace;
* :mod:`~simulator.stacks.resolve` -- one function from a scenario's ``calibration`` to the profile and
  stack (every command goes through ``simulator.resolve.resolve``), family transfer for GPUs without a
  measured profile;
* :mod:`~simulator.stacks.measurements` -- the measurement CSV; :mod:`~simulator.stacks.fit` -- the fit;
* :mod:`~simulator.stacks.bands` -- error bands on every prediction.
"""

from simulator.stacks.profile import StackProfile, stack_from_dict
from simulator.stacks.resolve import Calibration, resolve_calibration, transfer_profile
from simulator.stacks.transform import apply_ops as apply_stack_ops
from simulator.stacks.transform import corrected_profile, train_step_time
from simulator.stacks.transform import finish_step as finish_stack_step

__all__ = ["Calibration", "StackProfile", "apply_stack_ops", "corrected_profile", "finish_stack_step",
           "resolve_calibration", "stack_from_dict", "train_step_time", "transfer_profile"]

from simulator.stacks.report import FitReport, fit_measurements  # noqa: E402

__all__ += ["FitReport", "fit_measurements"]
