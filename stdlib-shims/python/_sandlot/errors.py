"""An exception as a run error: its kind, a one-line message, and the line, column and
traceback in the user's own code (sandlot's frames left out)."""

import traceback

from _sandlot.imports import ModuleNotAllowedError
from _sandlot.system_helper import NetworkDeniedError

USER_FILE = "<code>"
# Every module of this package is loaded under a file name that starts so.
SANDLOT_FILE_PREFIX = "<sandlot"


def error(kind, message, line=None, column=None, tb=None):
    return {"kind": kind, "message": message, "line": line, "column": column, "traceback": tb}


def from_exception(exc, memory_mb, kind=None):
    if kind is not None:
        message = one_line(exc)
    elif isinstance(exc, ModuleNotAllowedError):
        kind, message = "module_not_allowed", str(exc)
    elif (denied := _denial_in_chain(exc)) is not None:
        # requests, httpx and urllib wrap a refused connection in their own errors.
        kind, message = "network_denied", one_line(denied)
        if denied is not exc:
            message += f" (raised as {type(exc).__name__})"
    elif isinstance(exc, MemoryError):
        kind = "memory_limit"
        message = f"memory limit exceeded: the run may use {memory_mb} MB (MemoryError)"
    else:
        kind, message = "runtime_error", one_line(exc)
    line = column = None
    if isinstance(exc, SyntaxError) and exc.filename == USER_FILE:
        line, column = exc.lineno, exc.offset
    else:
        frames = _user_frames(exc.__traceback__)
        for frame in reversed(frames):
            if frame.filename == USER_FILE:
                line = frame.lineno
                column = frame.colno + 1 if frame.colno is not None else None
                break
    return error(kind, message, line, column, _format_chain(exc))


def _denial_in_chain(exc):
    """The NetworkDeniedError that `exc` is, or was caused by."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, NetworkDeniedError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def one_line(exc):
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _user_frames(tb):
    """The frames of a traceback from the first frame of user code on, without sandlot's."""
    while tb is not None and tb.tb_frame.f_code.co_filename != USER_FILE:
        tb = tb.tb_next
    return [f for f in traceback.extract_tb(tb)
            if not f.filename.startswith(SANDLOT_FILE_PREFIX)]


def _format_chain(exc):
    parts = []
    seen = set()
    while exc is not None and id(exc) not in seen and len(parts) < 8:
        seen.add(id(exc))
        text = "".join(traceback.format_exception_only(type(exc), exc))
        frames = _user_frames(exc.__traceback__)
        if frames:
            text = ("Traceback (most recent call last):\n"
                    + "".join(traceback.StackSummary.from_list(frames).format()) + text)
        parts.append(text)
        if exc.__cause__ is not None:
            exc, joint = exc.__cause__, ("\nThe above exception was the direct cause of the "
                                         "following exception:\n\n")
        elif exc.__context__ is not None and not exc.__suppress_context__:
            exc, joint = exc.__context__, ("\nDuring handling of the above exception, another "
                                           "exception occurred:\n\n")
        else:
            break
        parts.append(joint)
    if len(parts) % 2 == 0:
        parts.pop()  # a trailing joint whose exception was not printed
    return "".join(reversed(parts))
