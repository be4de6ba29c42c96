"""The answer to one scenario: ``Prediction`` (pydantic), whose JSON form is a stable contract.

Fields are only ever added, never renamed. Per phase: prefill and decode carry ``latency_s`` (one
step for the whole batch) and ``tokens_per_s``; generate carries ``ttft_s``, ``tpot_s`` and
``e2e_s`` (and ``latency_s`` = ``e2e_s``). All carry ``memory``, ``max_concurrency``, ``bound`` and
``breakdown``; ``tokens_per_step`` (output tokens a decode step commits per sequence: 1, or the
expected accepted tokens under speculative decoding), MoE-CAP's ``s_mbu`` / ``s_mfu``, NanoFlow's
``optimal_tokens_per_s_per_gpu`` and the ``optimal_fraction`` reached; with techniques, ``techniques``
(each one's effect versus the same scenario without it) and ``techniques_combined`` (versus none);
``warnings``: one line each, naming the field (context beyond ``max_position_embeddings``, idle GPUs).
``max_concurrency`` is the number of sequences whose KV cache fits for decode at the scenario's context,
per model replica; ``max_concurrency_total`` counts all replicas. Chunked prefill mixed into decode
adds ``prompt_tokens_per_s`` (decode) and ``prompt_tokens_credited`` (generate).
``latency_band_s`` / ``tokens_per_s_band`` (generate: ``ttft_band_s``, ``tpot_band_s``, ``e2e_band_s``)
the 10-90% error band of each, and ``band_basis`` the residuals it comes from.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Bound = Literal["compute", "memory", "communication", "overhead"]


_SPECS: dict[type, tuple] = {}


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)

    @classmethod
    def trusted(cls, **values: Any):
        """An instance from values the engine computed, each already of its field's type, without
        re-validating them (a point prediction builds dozens of rows; validation would be most of its
        time). Fields left out take their defaults; ``tests/test_speed_paths.py`` checks the result equals
        a validated one."""
        spec = _SPECS.get(cls)
        if spec is None:  # field names in the schema's order, and (name, default) of those with one
            fields = cls.model_fields
            spec = _SPECS[cls] = (tuple(fields), tuple((n, f.default) for n, f in fields.items() if not f.is_required()))
        given = set(values)
        if tuple(values) != spec[0]:  # not every field, in the schema's order: fill defaults, reorder
            for name, default in spec[1]:
                if name not in values:
                    values[name] = list(default) if isinstance(default, list) else default
            values = {name: values[name] for name in spec[0]}
        return _instance(cls, values, given)

    @classmethod
    def ordered(cls, values: tuple):
        """``trusted`` from a value for every field, in the schema's order."""
        return cls.from_trusted_dict(dict(zip(_field_names(cls), values)))

    @classmethod
    def from_trusted_dict(cls, values: dict):
        """``trusted`` from a dict of every field in the schema's order (the breakdown rows), kept as is."""
        names = _FIELD_SETS.get(cls)
        if names is None:
            names = _FIELD_SETS[cls] = set(_field_names(cls))
        return _instance(cls, values, names.copy())


_FIELDS: dict[type, tuple[str, ...]] = {}
_FIELD_SETS: dict[type, set[str]] = {}


def _field_names(cls) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(cls.model_fields)
    return names


_new = object.__new__
# the setters of the instance attributes every pydantic model has (its __dict__ and three slots), called
# directly: what object.__setattr__ finds for these names, without the lookup
_SLOTS = BaseModel.__dict__
_set_dict = _SLOTS["__dict__"].__set__
_set_fields_set = _SLOTS["__pydantic_fields_set__"].__set__
_set_extra = _SLOTS["__pydantic_extra__"].__set__
_set_private = _SLOTS["__pydantic_private__"].__set__


def _instance(cls, values: dict, fields_set: set):
    obj = _new(cls)
    _set_dict(obj, values)
    _set_fields_set(obj, fields_set)
    _set_extra(obj, None)
    _set_private(obj, None)
    return obj


class MemoryReport(_Out):
    """Per-GPU device memory (bytes)."""

    weights_bytes: float
    kv_cache_bytes: float
    activation_bytes: float
    workspace_bytes: float
    total_bytes: float
    capacity_bytes: float
    fits: bool
    kv_bytes_per_request: float
    kv_bytes_per_token: float  # per GPU, averaged over the request's cached tokens (windows and evictions included)


class OperatorReport(_Out):
    """One operator of the step, summed over its launches (per GPU)."""

    @classmethod
    def kernel_row(cls, name, kind, phase, count, flops, nbytes, link_bytes, time_s, compute_s, memory_s, link_s,
                   overhead_s, bound, fields_set: set | None = None) -> "OperatorReport":
        """``trusted`` of a row that is no collective (its collective fields empty), every value already of
        its field's type: the breakdown of a point, built without re-validation. ``fields_set``: the set of
        every field name the rows of one breakdown share (pydantic copies it before any change: a frozen
        row is never assigned to, ``model_copy`` copies it first); default: a set of its own."""
        obj = _new(cls)
        # a copy of the row of defaults (every field, in the schema's order) with the values filled in: a
        # dict of this size is copied in about half the time a literal of it is built in
        values = _ROW_DEFAULTS.copy()
        values["name"] = name
        values["kind"] = kind
        values["phase"] = phase
        values["count"] = count
        values["flops"] = flops
        values["bytes"] = nbytes
        values["link_bytes"] = link_bytes
        values["time_s"] = time_s
        values["compute_s"] = compute_s
        values["memory_s"] = memory_s
        values["link_s"] = link_s
        values["overhead_s"] = overhead_s
        values["bound"] = bound
        _set_dict(obj, values)
        _set_fields_set(obj, _ROW_FIELDS.copy() if fields_set is None else fields_set)
        _set_extra(obj, None)
        _set_private(obj, None)
        return obj

    name: str
    kind: str  # the profile's operation kind: gemm, attention_prefill, attention_decode, memory, collective, ...
    phase: Literal["prefill", "decode"]
    count: int
    flops: float
    bytes: float
    link_bytes: float
    time_s: float
    compute_s: float  # SM time at the profile's compute efficiency
    memory_s: float  # HBM time at the profile's memory efficiency
    link_s: float
    overhead_s: float  # launch overheads
    bound: Bound
    # collectives only: kind (all_reduce, all_gather, reduce_scatter, all_to_all, send_recv), parallel group
    # (tp, cp, ep, etp, pp), the link it ran on, the algorithm, ranks; ``hidden_s``: time hidden behind
    # other work by the boundary's overlap policy (``time_s`` is what remains exposed)
    collective: str | None = None
    group: str | None = None
    link: str | None = None
    algorithm: str | None = None
    ranks: int | None = None
    hidden_s: float = 0.0


_ROW_FIELDS = set(OperatorReport.model_fields)
# every field of a row in the schema's order: the defaults, and None where the field has none (kernel_row
# fills those in)
_ROW_DEFAULTS = {name: None if f.is_required() else f.default for name, f in OperatorReport.model_fields.items()}


def row_fields_set() -> set[str]:
    """Every field name of a breakdown row: the fields-set a breakdown's rows share (``kernel_row``)."""
    return _ROW_FIELDS.copy()


class ResourceTimes(_Out):
    """Busy time of each resource in the reported step, before the overlap policy combines them."""

    sm_s: float
    hbm_s: float
    link_s: float
    overhead_s: float


class TechniqueEffect(_Out):
    """A technique's effect: the scenario with it (after) over the same scenario without it (before).
    Ratios below 1 mean less; latencies are the prefill of the prompt and decode time per output token.
    Ratios are null where the scenario is not valid without the technique."""

    name: str
    params: dict[str, Any]
    citation: str
    kv_bytes_ratio: float | None = None
    weight_bytes_ratio: float | None = None
    memory_ratio: float | None = None
    max_concurrency_before: int | None = None
    max_concurrency_after: int
    prefill_latency_ratio: float | None = None
    decode_latency_ratio: float | None = None
    throughput_ratio: float | None = None


class Prediction(_Out):
    phase: Literal["prefill", "decode", "generate"]
    model: str
    gpu: str
    num_gpus: int
    tp: int
    pp: int
    replicas: int
    calibration: str
    overlap: str
    latency_s: float
    tokens_per_s: float
    ttft_s: float | None = None
    tpot_s: float | None = None
    e2e_s: float | None = None
    memory: MemoryReport
    max_concurrency: int
    bound: Bound
    resources: ResourceTimes
    mfu: float
    mbu: float
    breakdown: list[OperatorReport]
    tokens_per_step: float = 1.0
    s_mbu: float | None = None
    s_mfu: float | None = None
    optimal_tokens_per_s_per_gpu: float | None = None
    optimal_fraction: float | None = None
    techniques: list[TechniqueEffect] = []
    techniques_combined: TechniqueEffect | None = None
    warnings: list[str] = []  # what runs but likely is not meant: context beyond the trained positions, idle GPUs
    parallelism: dict[str, Any] | None = None  # degrees, placement (groups, GPUs, nodes, links), pipeline
    # 10-90% error bands from the calibration residuals of the profile in use (simulator.stacks.bands)
    latency_band_s: tuple[float, float] | None = None
    tokens_per_s_band: tuple[float, float] | None = None
    ttft_band_s: tuple[float, float] | None = None
    tpot_band_s: tuple[float, float] | None = None
    e2e_band_s: tuple[float, float] | None = None
    band_basis: str | None = None
    # max_concurrency is per model replica (each replica's GPUs hold its own KV caches); all replicas:
    max_concurrency_total: int | None = None
    # chunked prefill mixed into decode (Sarathi-Serve): prompt tokens the decode steps prefill per second
    # (decode), and the prompt tokens of the next batch they prefill during one generation (generate)
    prompt_tokens_per_s: float | None = None
    prompt_tokens_credited: float | None = None
    # the phase the request spends most time in (generate: prefill or decode; else the phase itself)
    dominant_phase: Literal["prefill", "decode"] | None = None

    def contract(self) -> dict:
        """The JSON contract: the phase's own fields, then the common ones."""
        data = self.model_dump(mode="json")
        if self.phase != "generate":
            for key in ("ttft_s", "tpot_s", "e2e_s", "ttft_band_s", "tpot_band_s", "e2e_band_s"):
                data.pop(key)
        return data
