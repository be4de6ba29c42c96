"""``roofsim techniques list|show NAME``: the registered efficiency techniques."""

from __future__ import annotations

import inspect

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


def _type(annotation) -> str:
    return annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")


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
    rows = [[name, _type(finfo.annotation), _default(finfo), finfo.description or ""]
            for name, finfo in cls.model_fields.items()]
    print(table(["parameter", "type", "default", "meaning"], rows))
    print(f"\nSource: {cls.citation}")
    return 0
