"""Command-line options generated from a stage's config: one option per field, with its type, default and help.

    >>> from downsize.stages import STAGES
    >>> params = config_parameters(STAGES["prune"].config)
    >>> [p.name for p in params][:3]
    ['method', 'targets', 'sparsity']

Only ``downsize.cli`` uses this. The mapping is mechanical, so the CLI cannot drift from the recipe
schema: a field ``calib_samples: int = 64`` is ``--calib-samples INTEGER [default: 64]``; a bool is
``--x/--no-x``; a ``Literal`` is a choice; a list is a repeatable option; a mapping is one
``k=v k=v`` string that the config itself parses; a nested group (``lora: LoraFields``) becomes
prefixed options (``--lora-r``, ``--lora-alpha``) that create the group when any of them is given.
"""

from __future__ import annotations

import inspect
import types
import typing
from typing import Any, Callable, Literal, Optional, Union

import typer
from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticUndefined

from downsize.stages.base import WIRING_FIELDS

SEP = "__"  # nested group field -> parameter name: lora__r is --lora-r


def _unwrap(annotation) -> tuple[Any, bool]:
    """(inner type, optional?) of ``Optional[X]`` / ``X | None``."""
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        if len(args) == 1:
            return args[0], optional
        return Union[tuple(args)], optional  # type: ignore[return-value]
    return annotation, False


def _cli_type(annotation) -> tuple[Any, dict]:
    """The Python type typer sees and extra typer.Option keywords for one field's annotation."""
    inner, _ = _unwrap(annotation)
    origin = typing.get_origin(inner)
    if origin is Literal:  # choices; q4_k_m is accepted for Q4_K_M (the config keeps the canonical spelling)
        return Literal[tuple(str(c) for c in typing.get_args(inner))], {"case_sensitive": False}
    if origin is list:
        return list[str], {}
    if origin in (dict, Union) or inner is dict:
        return str, {}
    if inner in (int, float, str, bool):
        return inner, {}
    return str, {}


def _is_group(annotation) -> type[BaseModel] | None:
    inner, _ = _unwrap(annotation)
    return inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None


def _default(field) -> Any:
    if field.default_factory is not None:
        return None  # a mutable default (e.g. {}): the config supplies it when the option is not given
    return None if field.default is PydanticUndefined else field.default


def _option(name: str, field, panel: str | None, flags: list[str] | None = None, force_optional: bool = False):
    typ, extra = _cli_type(field.annotation)
    required = field.default is PydanticUndefined and field.default_factory is None and not force_optional
    default = ... if required else _default(field)
    decl = flags or ["--" + name.replace(SEP, "-").replace("_", "-")]
    if typ is bool and not force_optional:
        decl = [f"{d}/--no-{d[2:]}" for d in decl]
    annotation = typ if (required or default is not None) and typ is not list[str] else Optional[typ]
    opt = typer.Option(default, *decl, help=field.description or "", rich_help_panel=panel, show_default=True, **extra)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=annotation)


def _panel(config: type[BaseModel], name: str) -> str:
    """The help group of a field: the config class that declares it (its docstring's first line names it)."""
    for klass in reversed(config.__mro__):
        if name in getattr(klass, "__annotations__", {}):
            return getattr(klass, "__panel__", None) or "Options"
    return "Options"


def config_parameters(config: type[BaseModel], exclude: tuple[str, ...] = (), arguments: dict[str, str] | None = None,
                      aliases: dict[str, list[str]] | None = None) -> list[inspect.Parameter]:
    """One ``inspect.Parameter`` (typer option or argument) per field of ``config``."""
    arguments, aliases = arguments or {}, aliases or {}
    params = []
    for name, field in config.model_fields.items():
        if name in WIRING_FIELDS or name in exclude:
            continue
        panel = _panel(config, name)
        if name in arguments:
            typ, _ = _cli_type(field.annotation)
            required = field.default is PydanticUndefined
            arg = typer.Argument(... if required else None, help=arguments[name], show_default=False)
            params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=arg,
                                            annotation=typ if required else Optional[typ]))
            continue
        group = _is_group(field.annotation)
        if group is not None:
            for sub, sf in group.model_fields.items():
                params.append(_option(f"{name}{SEP}{sub}", sf, f"{panel}: {name} (any of these turns it on)",
                                      force_optional=True))
            continue
        params.append(_option(name, field, panel, aliases.get(name)))
    return params


def config_from_options(config: type[BaseModel], values: dict[str, Any], **fixed) -> BaseModel:
    """Build ``config`` from parsed options (None means 'not given': the config's default applies)."""
    fields: dict[str, Any] = dict(fixed)
    groups: dict[str, dict] = {}
    for key, v in values.items():
        if SEP in key:
            g, sub = key.split(SEP, 1)
            if v is not None:
                groups.setdefault(g, {})[sub] = v
        elif key in config.model_fields and v is not None and v != []:
            fields[key] = v
    fields.update(groups)
    try:
        return config(**fields)
    except ValidationError as e:  # the command line's words for what the config refused
        from downsize.errors import DownsizeError

        lines = []
        for err in e.errors():
            loc = [str(p) for p in err["loc"]]
            where = ("--" + "-".join(loc).replace("_", "-")) if loc else "options"
            lines.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
        raise DownsizeError("; ".join(lines), hint="see `--help` for what each option takes") from None


def command(fn: Callable, params: list[inspect.Parameter], doc: str) -> Callable:
    """``fn(**values)`` with a generated signature, ready for ``app.command()``."""
    def wrapper(**kwargs):
        return fn(**kwargs)

    wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    wrapper.__doc__ = doc
    wrapper.__name__ = fn.__name__
    return wrapper
