"""How the command-line tools end on a user error: one screen, `error: <what, where, the fix>`, exit status 2.

A user error is a mistake in what the user passed (a config key, a path, a flag), not a bug: its message already says
what is wrong, where, and what to do, so a traceback above it only hides it. `run_cli` prints that one message on
stderr and returns `USER_ERROR_STATUS`; the traceback is shown when asked for (`LT_DEBUG=1` or the tool's --debug).
Anything else (a bug, an interrupted run) keeps Python's traceback and exit status.

Used by tools/train_net.py, tools/demo.py, tools/pretrain_backbone.py and the classification CLI.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any, Callable, Sequence, Tuple, Type

__all__ = [
    "USER_ERROR_STATUS",
    "UserError",
    "UserFileNotFoundError",
    "debug_requested",
    "error_message",
    "config_error",
    "misplaced_options",
    "report_user_error",
    "run_cli",
]

USER_ERROR_STATUS = 2  # argparse's status for a bad command line; distinct from 1 (a crash) and 130 (Ctrl-C)


class UserError(Exception):
    """A mistake in the user's input; the message says what is wrong, where, and the fix."""


class UserFileNotFoundError(UserError, FileNotFoundError):
    """A file the user named (or needs to pass) does not exist; also a FileNotFoundError for callers that catch it."""


def debug_requested(argv: Sequence[str] | None = None) -> bool:
    """True when the traceback of a user error is wanted: LT_DEBUG=1 in the environment, or --debug in `argv`."""
    return os.environ.get("LT_DEBUG") == "1" or "--debug" in (argv or ())


def error_message(err: BaseException) -> str:
    """The error's own text (a KeyError's str() would wrap it in quotes)."""
    if isinstance(err, KeyError) and len(err.args) == 1 and isinstance(err.args[0], str):
        return err.args[0]
    return str(err) or type(err).__name__


def report_user_error(err: BaseException) -> int:
    """Print `error: ...` on stderr; return the exit status of a user error."""
    print(f"error: {error_message(err)}", file=sys.stderr, flush=True)
    return USER_ERROR_STATUS


def run_cli(
    main: Callable[[], Any],
    user_errors: Tuple[Type[BaseException], ...] = (),
    debug: bool = False,
) -> int:
    """Call `main()`; a `UserError` (or one of `user_errors`) ends in `error: ...` and exit status 2, re-raised
    with its traceback when `debug` or LT_DEBUG=1. Returns `main`'s exit status when it returns an int, else 0."""
    try:
        status = main()
    except (UserError, *user_errors) as err:
        if debug or debug_requested():
            raise
        return report_user_error(err)
    return status if isinstance(status, int) else 0


_TYPE_MISMATCH = re.compile(
    r"Type mismatch \((?P<old_type>.+?) vs\. (?P<new_type>.+?)\) with values \((?P<old>.*) vs\. (?P<new>.*)\) "
    r"for config key: (?P<key>\S+)",
    re.DOTALL,
)


def config_error(err: BaseException, config_file: str, overrides: Sequence[str] = ()) -> UserError:
    """A config error (yacs's ValueError / KeyError / AssertionError, or a check of ours) as a UserError that says
    where: "command-line override" when it names one of the `overrides` keys, else `config_file`. yacs's type
    mismatch is said in words, with the fix."""
    text = error_message(err)
    keys = [str(k) for k in overrides[::2]]
    named = [k for k in keys if re.search(rf"(?<![\w.]){re.escape(k)}(?![\w.])", text)]
    source = "command-line override" if named or "override" in text else (config_file or "config")
    match = _TYPE_MISMATCH.search(text)
    if match is None:
        return UserError(text if source in text else f"{source}: {text}")
    key, old, new = match["key"], match["old"], match["new"]
    if "tuple" in match["old_type"] or "list" in match["old_type"]:
        items = [item.strip(" '\"") for item in new.strip("()[] ").split(",") if item.strip(" '\"")]
        on_line = "(" + ", ".join(f"'{i}'" for i in items) + ("," if len(items) == 1 else "") + ")"
        in_yaml = "(" + ", ".join(f'"{i}"' for i in items) + ("," if len(items) == 1 else "") + ")"
        fix = (
            f'write a tuple, with a trailing comma for one item: {key} "{on_line}" on the command line, or '
            f"{key.rsplit('.', 1)[-1]}: {in_yaml} in the YAML file"
        )
    else:
        fix = f"give a value of that type, like {old}"
    expected = _type_name(match["old_type"])
    return UserError(
        f"{source}: {key} must be {'an' if expected[0] in 'aeiou' else 'a'} {expected} (like {old}); got the "
        f"{_type_name(match['new_type'])} {new!r}. Fix: {fix}."
    )


def _type_name(repr_of_type: str) -> str:
    """ "<class 'tuple'>" -> "tuple"."""
    inner = re.search(r"'([^']+)'", repr_of_type)
    name = inner.group(1) if inner else repr_of_type
    return {"str": "string", "int": "integer", "bool": "boolean"}.get(name, name)


def misplaced_options(opts: Sequence[str], option_strings: Sequence[str]) -> list[str]:
    """The command-line options (--resume, --eval-only, ...) that argparse read into the trailing KEY VALUE list
    because they came after the first override."""
    known = set(option_strings)
    return [item for item in opts if item.split("=", 1)[0] in known]
