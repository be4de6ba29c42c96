"""Per-request state shared by the replicas of one simulation, and the records it ends as."""

from __future__ import annotations

import numpy as np

RECORD_DTYPE = np.dtype([
    ("id", "i8"), ("arrival_s", "f8"), ("prompt_tokens", "i8"), ("output_tokens", "i8"), ("prefix_group", "i4"),
    ("first_scheduled_s", "f8"), ("first_token_s", "f8"), ("finish_s", "f8"), ("replica", "i4"),
    ("decode_replica", "i4"), ("preemptions", "i4"), ("kv_transfer_s", "f8"), ("kv_exposed_s", "f8"),
    ("escalated", "?"), ("rejected", "?"),
])


class Ledger:
    """Plain lists indexed by request id (fast scalar access in the event loop); -1 means 'not yet'."""

    def __init__(self, requests: np.ndarray):
        n = len(requests)
        self.n = n
        self.arrival = requests["arrival_s"].tolist()
        self.prompt = requests["prompt_tokens"].tolist()
        self.output = requests["output_tokens"].tolist()
        self.group = requests["prefix_group"].tolist()
        self.prefix = requests["prefix_tokens"].tolist()
        self.first_sched = [-1.0] * n
        self.first_token = [-1.0] * n
        self.finish = [-1.0] * n
        self.last_token = [-1.0] * n
        self.generated = [0.0] * n
        self.preemptions = [0] * n
        self.replica = [-1] * n
        self.decode_replica = [-1] * n
        self.kv_transfer = [np.nan] * n  # link busy with this request's KV: start to end of its transfer
        self.kv_exposed = [np.nan] * n  # of which after its prefill ended (what decode admission waits for)
        self.escalated = [False] * n
        self.rejected: dict[int, str] = {}
        self.resume_gaps: list[float] = []
        self.completed = 0

    def reject(self, rid: int, reason: str) -> None:
        self.rejected[rid] = reason

    def records(self) -> np.ndarray:
        out = np.zeros(self.n, dtype=RECORD_DTYPE)
        out["id"] = np.arange(self.n)
        out["arrival_s"] = self.arrival
        out["prompt_tokens"] = self.prompt
        out["output_tokens"] = self.output
        out["prefix_group"] = self.group
        out["first_scheduled_s"] = self.first_sched
        out["first_token_s"] = self.first_token
        out["finish_s"] = self.finish
        out["replica"] = self.replica
        out["decode_replica"] = self.decode_replica
        out["preemptions"] = self.preemptions
        out["kv_transfer_s"] = self.kv_transfer
        out["kv_exposed_s"] = self.kv_exposed
        out["escalated"] = self.escalated
        out["rejected"] = [i in self.rejected for i in range(self.n)]
        return out
