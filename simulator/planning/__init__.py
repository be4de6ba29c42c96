"""The capacity planner: the cheapest deployment that serves a request rate within TTFT/TPOT SLOs,
searched with the analytical fast path over GPUs, layouts, replicas, batch caps, techniques and
prefill/decode splits, then verified by the request-level DES. Public API: ``plan``."""

from simulator.planning.models import Plan, PlanRequest, PlanResult
from simulator.planning.planner import plan

__all__ = ["Plan", "PlanRequest", "PlanResult", "plan"]
