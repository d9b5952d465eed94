"""The command line's analysis options, generated from `AnalysisConfig`: one flag per field.

Every leaf field of `AnalysisConfig` (the nested `model` and `dataset` flattened) becomes a flag whose
help is the field's description and whose default is the field's default, so the CLI and the config
cannot drift apart: a field added to the config gets a flag, a default changed there changes here.

- Flag names: `--` + the field name with `-` for `_`, except the few in `FLAG_NAMES`, which keep the
  shorter names users already type (`--model`, `--delta`, `--refine`, ...).
- Lists are comma-separated, and repeating the flag adds more (`--delta 0.01 --delta 0.05`); `none`
  is the empty list. `Literal` fields show their choices; booleans get `--x/--no-x`.
- Values are handed to pydantic as the user typed them, so every bad value is reported by the
  config's own validation, in one format (`error_lines`).
"""

from __future__ import annotations

import argparse
import types
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from redundancy.config import AnalysisConfig

# config path → flag, where the flag is not simply the field's name
FLAG_NAMES: dict[str, str] = {
    "model.name": "--model",
    "model.weights": "--weights",
    "dataset.spec": "--dataset",
    "dataset.max_train": "--max-train",
    "dataset.max_test": "--max-test",
    "deltas": "--delta",
    "refine_resolution": "--refine",
    "model.pooling": "--pooling",
    "dataset.embedding_column": "--embedding-column",
    "dataset.text_column": "--text-column",
    "dataset.label_column": "--label-column",
    "dataset.split_column": "--split-column",
    "dataset.test_fraction": "--test-fraction",
}
_METAVARS: dict[type, str] = {int: "N", float: "X"}  # str: the field's name, e.g. SPEC


@dataclass(frozen=True)
class ConfigOption:
    """One flag for one leaf field of `AnalysisConfig`."""

    path: tuple[str, ...]  # ("dataset", "max_train")
    flag: str  # "--max-train"
    info: FieldInfo
    scalar: type  # int, float, str or bool (for a list: its items' type)
    is_list: bool
    choices: tuple[str, ...] | None

    @property
    def name(self) -> str:
        """The field as errors name it: `dataset.max_train`."""
        return ".".join(self.path)

    @property
    def dest(self) -> str:
        return "config__" + "__".join(self.path)

    @property
    def required(self) -> bool:
        return self.info.is_required()

    @property
    def default(self) -> Any:
        return None if self.required else self.info.get_default(call_default_factory=True)


def _without_none(annotation: Any) -> Any:
    """`X | None` → `X`; `list[X] | Literal[...] | None` → `list[X]` (a repeatable flag: `--layers sweep`
    gives `["sweep"]`, which the config reads as `"sweep"`)."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
        lists = [a for a in args if get_origin(a) is list]
        if len(lists) == 1 and all(get_origin(a) in (list, Literal) for a in args):
            return lists[0]
    return annotation


def _option(path: tuple[str, ...], info: FieldInfo) -> ConfigOption:
    annotation = _without_none(info.annotation)
    is_list = get_origin(annotation) is list
    item = get_args(annotation)[0] if is_list else annotation
    choices: tuple[str, ...] | None = None
    if get_origin(item) is Literal:
        choices = tuple(str(c) for c in get_args(item))
        item = str
    if item not in (int, float, str, bool) or (is_list and item is bool):
        raise TypeError(
            f"AnalysisConfig.{'.'.join(path)} has type {info.annotation!r}, which the CLI cannot express; "
            "give it a flag by hand in redundancy/cli/options.py"
        )
    flag = FLAG_NAMES.get(".".join(path), "--" + "-".join(path).replace("_", "-"))
    return ConfigOption(path=path, flag=flag, info=info, scalar=item, is_list=is_list, choices=choices)


def config_options(model: type[BaseModel] = AnalysisConfig, prefix: tuple[str, ...] = ()) -> list[ConfigOption]:
    """One option per leaf field, in declaration order; nested models are flattened."""
    out: list[ConfigOption] = []
    for name, info in model.model_fields.items():
        annotation = _without_none(info.annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out += config_options(annotation, (*prefix, name))
        else:
            out.append(_option((*prefix, name), info))
    return out


def show(value: Any) -> str:
    """A value as a user reads it: `0.01, 0.05`, `none`, `5`, `on`."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):  # spaced so that help text wraps between values
        return ", ".join(show(v) for v in value) if value else "none"
    return str(value)


class _Given(list):
    """A list the user gave (not the default): repeating the flag extends it."""


class _ListAction(argparse.Action):
    """Comma-separated values; the first use replaces the default, later uses add to it."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        text = str(values).strip()
        items = [] if text.lower() == "none" else [t.strip() for t in text.split(",") if t.strip()]
        current = getattr(namespace, self.dest, None)
        setattr(namespace, self.dest, _Given([*current, *items]) if isinstance(current, _Given) else _Given(items))


def _help(opt: ConfigOption) -> str:
    text = (opt.info.description or "").replace("`", "").replace("%", "%%").rstrip(".")
    if opt.is_list:
        text += ". Comma-separated; repeat the flag to add more"
    tail = "required" if opt.required else f"default: {show(opt.default)}"
    return f"{text} ({tail})" if text else f"({tail})"


def add_config_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> list[ConfigOption]:
    """Register one flag per config field on `parser`; returns the options."""
    options = config_options()
    for opt in options:
        metavar = "{" + ",".join(opt.choices) + "}" if opt.choices else _METAVARS.get(opt.scalar, opt.path[-1].upper())
        if opt.scalar is bool:
            parser.add_argument(opt.flag, dest=opt.dest, action=argparse.BooleanOptionalAction,
                                default=opt.default, help=_help(opt))
        elif opt.is_list:
            parser.add_argument(opt.flag, dest=opt.dest, action=_ListAction, default=opt.default,
                                metavar=f"{metavar}[,...]", help=_help(opt))
        else:
            parser.add_argument(opt.flag, dest=opt.dest, default=opt.default, metavar=metavar, help=_help(opt))
    return options


def config_from_namespace(args: argparse.Namespace, options: Sequence[ConfigOption] | None = None) -> AnalysisConfig:
    """The validated config from parsed flags (raises pydantic's `ValidationError` on bad values)."""
    return AnalysisConfig.model_validate(fields_from_namespace(args, options))


def fields_from_namespace(args: argparse.Namespace, options: Sequence[ConfigOption] | None = None) -> dict[str, Any]:
    """The raw (not yet validated) config the flags give, nested as `AnalysisConfig` is."""
    fields: dict[str, Any] = {}
    for opt in options if options is not None else config_options():
        value = getattr(args, opt.dest)
        if value is None and opt.required:
            continue  # pydantic names it as missing
        node = fields
        for part in opt.path[:-1]:
            node = node.setdefault(part, {})
        node[opt.path[-1]] = list(value) if isinstance(value, list) else value
    return fields


# ------------------------------------------------------------------------------------------------
# errors

def error_line(field: str, reason: str) -> str:
    """The one format of a bad-input error on the command line."""
    return f"advisor: error [{field}]: {reason}"


def _reason(err: dict[str, Any], flag: str | None) -> str:
    if err["type"] == "missing":
        return f"required: give {flag}" if flag else "required"
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] in ("value_error", "assertion_error"):
        return msg  # our validators name the bad values themselves
    value = err.get("input")
    shown = show(value) if not isinstance(value, str) else value if value.strip() == value != "" else repr(value)
    return f"{flag + ' ' if flag else ''}{shown}: {msg[:1].lower()}{msg[1:]}"


def validation_errors(exc: ValidationError) -> list[tuple[str, str]]:
    """(field, reason) per bad field, each reason naming every bad value of that field."""
    flags = {opt.name: opt.flag for opt in config_options()}
    by_field: dict[str, list[str]] = {}
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"] if not isinstance(p, int)) or "config"
        by_field.setdefault(field, []).append(_reason(dict(err), flags.get(field)))
    return [(field, "; ".join(dict.fromkeys(reasons))) for field, reasons in by_field.items()]


def field_of_flag(flag: str, options: Sequence[ConfigOption] | None = None) -> str:
    """The config field a flag sets (`--max-train` → `dataset.max_train`), else the flag's own name."""
    for opt in options if options is not None else config_options():
        if opt.flag == flag:
            return opt.name
    return flag.lstrip("-").replace("-", "_")
