"""Help text of the command line: option values named for people, not as types."""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperArgument, TyperGroup, TyperOption

# Shown instead of a Python type: what kind of value the option takes.
_KINDS: dict[type, str] = {int: "N", float: "NUMBER"}
_CHOICES_SHOWN = 24


def readable_options(command: Any) -> None:
    """Give every option of ``command`` and its subcommands a metavar a person reads.

    Values read as what they are (``N``, ``PATH``, the choices, the option's name in
    capitals), never as Python types such as ``<str>``; flags show no value at all,
    and an argument's name says what it is.
    """
    params = list(command.params)
    help_option = command.get_help_option(typer.Context(command))
    if help_option is not None:
        params.append(help_option)
    for param in params:
        if isinstance(param, TyperArgument):
            param.metavar = param.metavar or (param.name or "value").upper()
            param.display_type_rich = _no_type  # type: ignore[method-assign]
        elif isinstance(param, TyperOption) and param.metavar is None:
            param.metavar = _metavar(param)
    if isinstance(command, TyperGroup):
        for sub in command.commands.values():
            readable_options(sub)


def _no_type(ctx: Any) -> None:
    return None


def _metavar(option: TyperOption) -> str:
    if option.is_flag or option.count:
        return ""
    descriptor = getattr(option, "type_descriptor", None)
    if descriptor is not None and descriptor.is_choice and descriptor.choices:
        choices = "[" + "|".join(str(getattr(c, "value", c)) for c in descriptor.choices) + "]"
        # A long list reads better in the option's help than in a narrow column.
        if len(choices) <= _CHOICES_SHOWN:
            return choices
    if descriptor is not None and descriptor.is_path:
        return "PATH"
    annotation = getattr(descriptor, "annotation", None)
    if annotation in _KINDS:
        return _KINDS[annotation]
    return (option.name or "value").upper().replace("_", "-")
