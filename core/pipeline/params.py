"""One protocol for every page's request: a table of URL parameters gives `from_params`, `to_params` and the range
part of `validate` for a frozen request dataclass, with one wording for one fault on every page.

A table row (`Param`) names the URL parameter, the request's field, how its text is read and written, and the range
or set of values it may take. A page's request class lists its rows in `PARAMS` and calls `read_params` /
`write_params` / `out_of_range`; fields the table cannot express (the Ambiguity page's senses, say) stay in the class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Collection, Mapping


def whole_number(text: str) -> int:
    return int(str(text).strip())


def finite_number(text: str) -> float:
    value = float(str(text).strip())
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not finite")
    return value


def number_text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


KIND_WORDS = {whole_number: "a whole number", finite_number: "a number", str: "text"}


@dataclass(frozen=True)
class Param:
    """One URL parameter of a request.

    `read` turns the URL's text into the field's value (ValueError: not readable, the default is used); `write` the
    reverse. `low` / `high` bound a number (checked by `out_of_range`, so a form's value and a link's get the same
    sentence). `known` lists the values a name may take (e.g. the models on this machine): another one is replaced by
    the default with a sentence. `optional`: left out of the URL while the field is None or empty."""

    name: str
    attr: str
    read: Callable[[str], Any] = str
    write: Callable[[Any], str] = number_text
    low: float | None = None
    high: float | None = None
    known: Callable[[], Collection[str]] | None = None
    label: str = ""  # how a sentence names the field (default: the URL name)
    optional: bool = False
    why: str = ""  # appended to the out-of-range sentence: why the bound is there

    @property
    def what(self) -> str:
        return KIND_WORDS.get(self.read, "readable")

    @property
    def called(self) -> str:
        return self.label or self.name


def read_params(table: tuple[Param, ...], params: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    """The fields the URL sets, and a sentence per value it sets wrongly (that field keeps its default)."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for p in table:
        if p.name not in params or (p.optional and str(params[p.name]).strip() == ""):
            continue
        raw = params[p.name]
        try:
            value = p.read(raw)
        except (ValueError, TypeError, KeyError) as exc:
            if p.read in KIND_WORDS:
                problems.append(f"The link's '{p.name}' is {str(raw)!r}, not {p.what}: the default is used.")
            else:  # a reader of names says why the name cannot be used (a model folder outside the model roots...)
                reason = str(exc.args[0]) if exc.args else str(exc)
                problems.append(f"The link's '{p.name}' is {str(raw)!r}: {reason} The default is used.")
            continue
        if p.known is not None and value not in p.known():
            problems.append(f"The link names an unknown {p.called} '{value}': the default is used.")
            continue
        values[p.attr] = value
    return values, problems


def write_params(request: Any, table: tuple[Param, ...]) -> dict[str, str]:
    """The request as URL parameters, in table order (optional fields only when set)."""
    out = {}
    for p in table:
        value = getattr(request, p.attr)
        if p.optional and (value is None or value == "" or value == ()):
            continue
        out[p.name] = p.write(value)
    return out


def out_of_range(request: Any, table: tuple[Param, ...]) -> list[str]:
    """A sentence for every bounded field outside its range, and every named field this machine does not know."""
    problems = []
    for p in table:
        value = getattr(request, p.attr)
        if value is None:
            continue
        called = p.called[:1].upper() + p.called[1:]
        if (p.low is not None and value < p.low) or (p.high is not None and value > p.high):
            bounds = (f"between {number_text(p.low)} and {number_text(p.high)}" if p.high is not None
                      else f"at least {number_text(p.low)}")
            reason = f": {p.why}" if p.why else "."
            problems.append(f"{called} must be {bounds} (got {number_text(value)}){reason}")
        if p.known is not None and value not in (known := p.known()):
            problems.append(f"Unknown {p.called} '{value}'. Pick one of: {', '.join(known)}.")
    return problems
