"""The project's own log output for the command-line tools: the `lt_detectron` logger set up as Detectron2 sets up
its own (rank 0 to the console, every rank to OUTPUT_DIR/log.txt[.rank<N>]), so the fast evaluator's LVIS table and
the paths of the results, per-class CSV and plot are shown and kept with the run.

Colour only on a terminal: Detectron2's `default_setup` colours its console output and syntax-highlights the config
it logs unconditionally, so a redirected log is full of escape codes. Run it inside `plain_when_redirected()`;
`setup_run_logging` also gives coloured console handlers the plain format when their stream is not a terminal.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
from typing import IO, Iterable, Iterator

from detectron2.utils import comm
from detectron2.utils.logger import _cached_log_stream, _ColorfulFormatter
from termcolor import colored

__all__ = ["setup_run_logging", "plain_when_redirected", "plain_console_when_redirected", "PROJECT_LOGGER"]

PROJECT_LOGGER = "lt_detectron"
# The loggers Detectron2's default_setup configures with a console handler.
FRAMEWORK_LOGGERS = ("detectron2", "fvcore")
DATEFMT = "%m/%d %H:%M:%S"
PLAIN = logging.Formatter("[%(asctime)s] %(name)s %(levelname)s: %(message)s", datefmt=DATEFMT)
_OWN = "_lt_run_logging"  # marks the handlers added here, so a second call replaces them instead of doubling lines


def _is_terminal(stream: IO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def _console_formatter(stream: IO, name: str) -> logging.Formatter:
    if not _is_terminal(stream):
        return PLAIN
    return _ColorfulFormatter(
        colored("[%(asctime)s %(name)s]: ", "green") + "%(message)s", datefmt=DATEFMT, root_name=name, abbrev_name="lt"
    )


@contextlib.contextmanager
def plain_when_redirected() -> Iterator[None]:
    """Within this block, when stdout is not a terminal, Detectron2's `default_setup` sets up its loggers without
    colour and logs the config without syntax highlighting (both would write escape codes into the file or pipe)."""
    from detectron2.engine import defaults

    if _is_terminal(sys.stdout):
        yield
        return
    # default_setup looks both names up in its module when it runs: swapped for the duration of the block.
    saved = defaults.setup_logger, defaults._highlight
    defaults.setup_logger = functools.partial(saved[0], color=False)
    defaults._highlight = lambda code, filename: code
    try:
        yield
    finally:
        defaults.setup_logger, defaults._highlight = saved


def plain_console_when_redirected(names: Iterable[str] = FRAMEWORK_LOGGERS) -> None:
    """Give the coloured console handlers of the loggers `names` the plain format where their stream is not a
    terminal (a file or a pipe)."""
    for name in names:
        for handler in logging.getLogger(name).handlers:
            stream = getattr(handler, "stream", None)
            if isinstance(handler.formatter, _ColorfulFormatter) and stream is not None and not _is_terminal(stream):
                handler.setFormatter(PLAIN)


class _ConsoleHandler(logging.StreamHandler):
    """stdout as it was at set-up (as Detectron2's handlers); silent once that stream is closed (a test's capture
    that ended, in a process that runs the tools in-process) instead of reporting a logging error per record."""

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(self.stream, "closed", False):
            return
        super().emit(record)


def _is_project_record(record: logging.LogRecord) -> bool:
    return record.name == PROJECT_LOGGER or record.name.startswith(PROJECT_LOGGER + ".")


class _NotProjectRecords(logging.Filter):
    """On the root logger's console handlers: the project's records are printed by its own handler already."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _is_project_record(record)


def _root_console_handlers_skip_project_records() -> None:
    """Records of `lt_detectron` propagate to the root logger (pytest's caplog and an application's handlers see
    them), whose console handlers would print them a second time: lvis-api calls logging.basicConfig (stderr) when
    imported, tools/demo.py does too. lvis is imported first so that its handler exists to be filtered."""
    try:
        import lvis  # noqa: F401  (its logging.basicConfig side effect)
    except ImportError:
        pass
    for handler in logging.getLogger().handlers:
        if getattr(handler, "stream", None) not in (sys.stdout, sys.stderr):
            continue
        if not any(isinstance(f, _NotProjectRecords) for f in handler.filters):
            handler.addFilter(_NotProjectRecords())


def setup_run_logging(output_dir: str | None = None, rank: int | None = None) -> logging.Logger:
    """Set up the `lt_detectron` logger: INFO and above to stdout on rank 0 (coloured only on a terminal) and, with
    `output_dir`, to its log.txt (rank 0) or log.txt.rank<N>, the files Detectron2's loggers write. Calling it again
    (the launcher before the config is known, then each process with OUTPUT_DIR) replaces what the last call added.
    Also makes Detectron2's and fvcore's console output plain when redirected. Returns the logger.

    Records still propagate to the root logger (pytest's caplog and an application's own handlers see them); its
    console handlers (logging.basicConfig's) skip them, so no line is printed twice."""
    rank = comm.get_rank() if rank is None else rank
    logger = logging.getLogger(PROJECT_LOGGER)
    for handler in [h for h in logger.handlers if getattr(h, _OWN, False)]:
        logger.removeHandler(handler)  # the file streams are Detectron2's shared, cached ones: not closed here
    logger.setLevel(logging.INFO)
    handlers = []
    if rank == 0:
        console = _ConsoleHandler(sys.stdout)
        console.setFormatter(_console_formatter(sys.stdout, PROJECT_LOGGER))
        handlers.append(console)
    if output_dir:
        filename = os.path.join(output_dir, "log.txt" if rank == 0 else f"log.txt.rank{rank}")
        os.makedirs(output_dir, exist_ok=True)
        # Detectron2's cached stream for this file: one buffer, so lines of both loggers keep their order.
        log_file = logging.StreamHandler(_cached_log_stream(filename))
        log_file.setFormatter(PLAIN)
        handlers.append(log_file)
    for handler in handlers:
        setattr(handler, _OWN, True)
        logger.addHandler(handler)
    _root_console_handlers_skip_project_records()
    plain_console_when_redirected()
    return logger
