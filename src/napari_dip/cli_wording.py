"""The engine's error messages in the command line's words.

The engine words its errors for Python callers (``noise_sigma=0.1``, ``task='inpaint'``,
``early_stop=False``); the command line shows them with its options (``--noise-sigma 0.1``,
``--task inpaint``, ``--no-early-stop``). Only the names of the command's own options are
rewritten: ``name=value`` for any of them, and the bare name where it has an underscore
(``drop noise_sigma``), since plain words such as "mask" or "noise" are also English. A
``--no-X`` switch stands for ``X=False`` only: ``early_stop=300`` (a patience, which only
``--params`` sets) keeps the engine's words.
"""

from __future__ import annotations

import argparse
import re

#: Python values as the command line spells them.
_VALUES = {"None": "none", "True": "", "'auto'": "auto"}
#: Keywords whose option is another switch: ``mask="nan"`` is ``--nan-as-mask``.
_SWITCHES = {("mask", "'nan'"): "--nan-as-mask", ("mask", '"nan"'): "--nan-as-mask"}


def option_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """{restore argument name: its option} for the options of ``parser`` (``noise_sigma``:
    ``--noise-sigma``); ``--no-X`` switches give ``X=False`` (``early_stop``)."""
    names = {}
    for action in parser._actions:  # noqa: SLF001 - argparse has no public list
        long = next((o for o in action.option_strings if o.startswith("--")), None)
        if long is None or action.dest == "help":
            continue
        names[action.dest] = long
        if long.startswith("--no-"):
            names[long[5:].replace("-", "_")] = long
    return names


def in_cli_words(message: str, options: dict[str, str]) -> str:
    """``message`` with the engine's keyword names replaced by ``options``' spellings."""
    if not options:
        return message
    names = "|".join(sorted(map(re.escape, options), key=len, reverse=True))

    def keyword(match: re.Match) -> str:
        name, value = match.group(1), match.group(2)
        if (name, value) in _SWITCHES:
            return _SWITCHES[name, value]
        option = options[name]
        if option.startswith("--no-"):  # X=False is the switch; other values have no option
            return option if value == "False" else match.group(0)
        value = _VALUES.get(value, value.strip("'"))
        return f"{option} {value}".rstrip()

    text = re.sub(rf"(?<![\w./\\-])({names})=('[^']*'|[^\s,;:)]+)", keyword, message)
    bare = [n for n in options if "_" in n and not options[n].startswith("--no-")]
    if bare:
        pattern = "|".join(sorted(map(re.escape, bare), key=len, reverse=True))
        text = re.sub(rf"(?<![\w./\\'-])({pattern})(?![\w/'=-])",
                      lambda m: options[m.group(1)], text)
    return text


__all__ = ["in_cli_words", "option_names"]
