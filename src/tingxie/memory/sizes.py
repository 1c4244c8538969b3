"""Memory sizes as people write them: '6GiB', '800MB', '512M', '50%' of what is free."""

from __future__ import annotations

import math
import re

from tingxie.errors import OptionError
from tingxie.planner.memory_model import format_bytes  # one definition; the planner may not import this module

__all__ = ["format_bytes", "parse_memory_budget"]

# Single letters are binary, as in docker, the JVM and ulimit ('512M' is 512 MiB); 'MB' and
# friends are decimal SI units; 'MiB' and friends are binary. Case does not matter.
_UNITS = {"b": 1}
for _power, _letter in enumerate("kmgtp", start=1):
    _UNITS.update({_letter: 1024**_power, _letter + "i": 1024**_power, _letter + "ib": 1024**_power})
    _UNITS[_letter + "b"] = 1000**_power
del _power, _letter

_SIZE = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)\s*([a-z%]*)\s*$", re.IGNORECASE)

_EXPECTED = (
    "a size such as '6GiB', '800MB' or '512M', a number of bytes, "
    "or a share of free memory such as '0.5' or '50%'"
)


def parse_memory_budget(text: str, free_bytes: int) -> int:
    """Bytes meant by text. A bare number up to 1 is a fraction of free_bytes, above 1 whole bytes."""
    match = _SIZE.match(text)
    if match is None:
        raise OptionError(f"memory budget must be {_EXPECTED}, not {text!r}")
    value, unit = float(match.group(1)), match.group(2).lower()
    if not math.isfinite(value) or value <= 0:
        raise OptionError(f"memory budget must be positive, not {text!r}")

    if unit == "%" or (unit == "" and value <= 1):
        fraction = value / 100 if unit == "%" else value
        if fraction > 1:
            raise OptionError(f"memory budget {text!r} is more than all of the free memory")
        result = math.floor(fraction * free_bytes)
        if result < 1:
            raise OptionError(
                f"memory budget {text!r} of the free memory ({format_bytes(max(free_bytes, 0))}) is no memory at all"
            )
        return result

    if unit == "":
        if value != math.floor(value):
            raise OptionError(
                f"memory budget {text!r}: a bare number is a fraction of free memory (0 to 1) "
                "or a whole number of bytes; add a unit such as 'GiB'"
            )
        return int(match.group(1)) if match.group(1).isdigit() else int(value)  # exact for huge counts
    if unit not in _UNITS:
        raise OptionError(f"memory budget {text!r} has an unknown unit {match.group(2)!r}; it must be {_EXPECTED}")
    result = math.floor(value * _UNITS[unit])
    if result < 1:
        raise OptionError(f"memory budget must be at least one byte, not {text!r}")
    return result
