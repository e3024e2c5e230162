"""Strict readers for environment variables and numeric options: anything a user can
type either means what it says or is an InputError naming the variable or option."""

from __future__ import annotations

import math
import os

from builder.errors import InputError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_flag(name: str) -> bool:
    """A yes/no environment variable: 1/0, true/false, yes/no, on/off in any case;
    unset or empty is no. Anything else is exit 2, not a silent no."""
    raw = os.environ.get(name, "")
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InputError(f"{name}={raw[:20]!r}: expected 1/0, true/false or yes/no")


def bounded_number(value: float, what: str, *, minimum: float = 0.0,
                   maximum: float = 1e9, above: bool = True) -> float:
    """A finite number in range: `above` means strictly above `minimum` (a timeout of 0
    would never wait), else at least `minimum`."""
    if not math.isfinite(value) or (value <= minimum if above else value < minimum) \
            or value > maximum:
        bound = f"> {minimum:g}" if above else f">= {minimum:g}"
        raise InputError(f"{what}: {value!r} is not a number {bound} and <= {maximum:g}")
    return value


def env_number(name: str, *, minimum: float = 0.0, maximum: float = 1e9) -> float | None:
    """A numeric environment variable (None when unset or empty)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise InputError(f"{name}={raw[:20]!r}: expected a number") from None
    return bounded_number(value, name, minimum=minimum, maximum=maximum)
