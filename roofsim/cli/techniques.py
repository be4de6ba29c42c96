"""``roofsim techniques list|show NAME``: the registered efficiency techniques."""

from __future__ import annotations

import inspect
from types import UnionType
from typing import Annotated, Literal, Union, get_args, get_origin

from pydantic_core import PydanticUndefined

from hwmodels.errors import unknown_name
from roofsim.cli.format import table
from simulator.techniques import REGISTRY


def add_parser(sub) -> None:
    p = sub.add_parser("techniques", help="the efficiency techniques a scenario can apply")
    verbs = p.add_subparsers(dest="verb", required=True)
    verbs.add_parser("list", help="every technique with its parameters and source").set_defaults(run=run_list)
    show = verbs.add_parser("show", help="one technique: formula, parameters, source")
    show.add_argument("name")
    show.set_defaults(run=run_show)


def _default(finfo) -> str:
    value = finfo.get_default(call_default_factory=True)
    return "required" if value is PydanticUndefined else ("none" if value is None else str(value))


def params_text(cls) -> str:
    return ", ".join(f"{name}={_default(finfo)}" for name, finfo in cls.model_fields.items())


_NAMES = {int: "int", float: "float", bool: "true/false", str: "text", dict: "mapping"}


def _bounds(metadata) -> str:
    """Annotated-types constraints as a person writes them: '> 0', 'in [0, 1)', '>= 1'."""
    low = next(((f"{m.gt:g}", "(") for m in metadata if getattr(m, "gt", None) is not None), None) or \
        next(((f"{m.ge:g}", "[") for m in metadata if getattr(m, "ge", None) is not None), None)
    high = next(((f"{m.lt:g}", ")") for m in metadata if getattr(m, "lt", None) is not None), None) or \
        next(((f"{m.le:g}", "]") for m in metadata if getattr(m, "le", None) is not None), None)
    if low and high:
        return f" in {low[1]}{low[0]}, {high[0]}{high[1]}"
    if low:
        return f" {'>' if low[1] == '(' else '>='} {low[0]}"
    if high:
        return f" {'<' if high[1] == ')' else '<='} {high[0]}"
    return ""


def readable_type(annotation, metadata=()) -> str:
    """A parameter's type as a person reads it: ``int > 0, optional``, ``one of 8, 4, 2``, ``float in [0, 1]``."""
    args = [a for a in get_args(annotation) if a is not type(None)]
    optional = get_origin(annotation) in (Union, UnionType) and len(args) < len(get_args(annotation))
    if get_origin(annotation) in (Union, UnionType):
        text = " or ".join(readable_type(a) for a in args)
    elif get_origin(annotation) is Annotated:
        base, *extra = get_args(annotation)
        text = readable_type(base, [*extra, *metadata])
        metadata = ()
    elif get_origin(annotation) is Literal:
        text = "one of " + ", ".join(str(v) for v in get_args(annotation))
    else:
        text = _NAMES.get(get_origin(annotation) or annotation, getattr(annotation, "__name__", str(annotation)))
    return text + _bounds(metadata) + (", optional" if optional else "")


def run_list(args) -> int:
    family = None
    for name, cls in REGISTRY.items():
        if cls.family != family:
            family = cls.family
            print(f"# {family}")
        print(f"{name}: {cls.summary}")
        print(f"    parameters: {params_text(cls) or '-'}")
        print(f"    source: {cls.citation}")
    print("\nUse: roofsim predict --technique NAME[:key=value,...] (repeatable); roofsim techniques show NAME")
    return 0


def run_show(args) -> int:
    if args.name not in REGISTRY:
        raise unknown_name("name", args.name, REGISTRY)
    cls = REGISTRY[args.name]
    print(f"{cls.name} ({cls.family}): {cls.summary}\n")
    print(inspect.cleandoc(cls.__doc__ or "") + "\n")
    rows = [[name, readable_type(finfo.annotation, finfo.metadata), _default(finfo), finfo.description or ""]
            for name, finfo in cls.model_fields.items()]
    print(table(["parameter", "type", "default", "meaning"], rows))
    print(f"\nSource: {cls.citation}")
    return 0
