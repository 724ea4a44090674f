"""One job, start to report: compile the user's code, run it (or its main), convert what it
returned, collect its figures, and hand the report to the host, which sends it and ends the
process. Output goes to the host as it is written."""

import ast
import json
import linecache
import sys
import time

from _sandlot import convert, errors, fastgpt, figures, files, network
from _sandlot.errors import USER_FILE, error
from _sandlot.imports import after_fork_in_child, guarded_import, policy_for
from _sandlot.output import Stream
from _sandlot.system_helper import SystemHelper

# User code shares these modules and may patch them (`json.dumps = ...`); the run keeps its own
# references, taken before any user code runs.
_encode = json.JSONEncoder(ensure_ascii=False).encode
_encode_result = json.JSONEncoder(ensure_ascii=False, allow_nan=False,
                                  separators=(",", ":")).encode
_decode = json.JSONDecoder().decode
_ONLY_AST = ast.PyCF_ONLY_AST

# Set once in the zygote.
_host = None
_user_builtins = {}


def connect(finish, broker, write, connection, files_host, pause, wait_readable):
    """The host's functions: finish(result_json, exit_code, error_json, images_json) sends the
    report and ends the process; broker(request) performs an HTTP request and returns its
    answer (both JSON bytes); write(index, text) appends to stdout (0) or stderr (1) and says
    whether the output limit was crossed; connection(request) asks for a TCP connection and
    returns the answer (JSON bytes) and the socket's descriptor (network.py); files_host keeps
    the files the run writes (files.py); pause(seconds) waits through the server, which lends
    the run's core to another run meanwhile, and becomes time.sleep for longer waits;
    wait_readable(connection, timeout) does the same until a brokered connection has something
    to read (network.py)."""
    global _host
    _host = (finish, broker, write)
    _install_sleep(pause)
    network.install(connection, json.JSONEncoder().encode, _decode, wait_readable)
    files.connect(files_host)


def _install_sleep(pause):
    real_sleep = time.sleep

    def sleep(secs):
        """Suspend execution for the given number of seconds (a wait of more than 2 ms lets
        another run compute meanwhile)."""
        # Exactly Python's own for anything else: short waits, bad types, negative lengths.
        if type(secs) in (int, float) and 0.002 <= secs < float("inf"):
            pause(float(secs))
        else:
            real_sleep(secs)

    time.sleep = sleep


def configure(user_builtins):
    """The builtins user code sees (open() refused), taken once the zygote is warm."""
    global _user_builtins
    _user_builtins = user_builtins


class _Run:
    """What a run needs that its job does not decide: made in a child while it waits for its
    job, and in the zygote for its rehearsal (`rehearse` false: no rehearsal of its own). The
    after-fork callbacks run in both: a callback does what it does after any fork, and in the
    zygote it warms the path a child's takes (without it there, a pandas run copied ~280 pages
    more)."""

    def __init__(self, rehearse=True):
        finish, broker, write = _host
        self.finish = finish
        self.max_output = 0
        self.stdout = Stream(write, 0, "<stdout>", self.overflow)
        self.stderr = Stream(write, 1, "<stderr>", self.overflow)
        self.system_helper = SystemHelper(broker)
        # random reseeds itself there; numpy's generator state would be every child's: reseed
        # it too.
        after_fork_in_child()
        numpy_random = sys.modules.get("numpy.random")
        if numpy_random is not None:
            numpy_random.seed()
        sys.stdout, sys.stderr = self.stdout, self.stderr
        # A child's first compile, call and JSON round trip — and a DataFrame's first use —
        # write to pages it shares with the zygote, each a copy-on-write fault: a run of its
        # own now, while it waits, and the job's run finds those pages already copied. Only
        # where pandas is loaded: for plain Python the rehearsal cost more CPU than it saved
        # latency (docs/performance.md).
        if rehearse and "pandas" in sys.modules:
            for rehearsal in _REHEARSALS:
                _execute(rehearsal, False, self.system_helper)

    def send(self, result_json=None, exit_code=0, error=None):
        self.finish(*self.report(result_json, exit_code, error))

    def report(self, result_json, exit_code, error):
        """finish()'s arguments."""
        images = figures.collect()
        return (result_json, exit_code, None if error is None else _encode(error),
                _encode(images))

    def overflow(self):
        self.send(exit_code=1, error=errors.error(
            "output_limit", f"output exceeded the limit of {self.max_output} bytes"))


_prepared = None
# What a rehearsal runs: plain Python (a result of each JSON type) and the everyday pandas path.
_PLAIN_CODE = "def main(a, b):\n    return {'sum': a + b, 'list': [a, b, 1.5, 'x', None]}\n"
_PANDAS_CODE = ("import pandas as pd\n"
                "def main(a, b):\n"
                "    df = pd.DataFrame({'x': [a, b]})\n"
                "    return {'sum': int(df['x'].sum())}\n")
# The jobs a child of the python-data zygote runs for itself before its own. Kept small: a page
# a rehearsal copies that the job would not have touched is CPU spent for nothing (bench/compare
# counts the faults).
_REHEARSALS = tuple(
    {"code": code, "inputs": '{"a": 1, "b": 2}', "mode": "main",
     "imports": {"kind": "only", "modules": modules}, "memory_mb": 0}
    for code, modules in ((_PLAIN_CODE, ()), (_PANDAS_CODE, ("pandas",))))


def prepare():
    """In a child, before its job arrives: everything the job does not decide."""
    global _prepared
    _prepared = _Run()


def run(job):
    """Runs one job and sends its report; never returns. `job` holds code, inputs (JSON
    text), mode ("main" or "script"), imports (the import policy), convention ("native" or
    "fastgpt": FastGPT's calling convention and one output stream for its log),
    max_output_bytes and memory_mb."""
    state = _prepared or _Run()
    state.send(*_outcome(job, state))


# CPython 3.11 writes to a function's code object each time it runs until the function has run
# a few times (its warm-up count, then the counters of its specializing instructions), and to
# its type-lookup cache on each miss: in a child, each of those writes copies a page it shares
# with the zygote. The zygote runs a job's path itself before it forks, so that what a child
# runs of sandlot's own code is warm already (docs/performance.md).
_ZYGOTE_REHEARSALS = 32


def _zygote_jobs(code):
    return tuple(
        {"code": code, "inputs": '{"a": 1, "b": 2}', "mode": "main",
         "imports": {"kind": "standard_library", "rule": rule, "operator": []},
         "convention": convention, "max_output_bytes": 1 << 20, "memory_mb": 0}
        for rule, convention in (("native", "native"), ("fastgpt", "fastgpt")))


def rehearse_in_zygote():
    """In the zygote, once, before any fork: a job's path, end to end but for the report (and
    in the python-data zygote pandas' everyday path too)."""
    stdout, stderr = sys.stdout, sys.stderr
    own_import = _user_builtins.get("__import__")
    jobs = _zygote_jobs(_PLAIN_CODE)
    if "pandas" in sys.modules:
        jobs += _zygote_jobs(_PANDAS_CODE)
    failed = None
    try:
        for _ in range(_ZYGOTE_REHEARSALS):
            for job in jobs:
                state = _Run(rehearse=False)
                result_json, exit_code, error_ = _outcome(job, state)
                state.report(result_json, exit_code, error_)
                if exit_code and failed is None:
                    failed = error_
    finally:
        sys.stdout, sys.stderr = stdout, stderr
        linecache.cache.pop(USER_FILE, None)
        if own_import is None:
            _user_builtins.pop("__import__", None)
        else:
            _user_builtins["__import__"] = own_import
    if failed is not None:
        # Runs still work; their children only copy more pages.
        print(f"sandlot: the zygote's rehearsal of a job failed: {failed}", file=sys.stderr)


def _outcome(job, state):
    """A job's result JSON, exit code and error."""
    max_output = state.max_output = job["max_output_bytes"]
    fastgpt_convention = job["convention"] == "fastgpt"
    try:
        outcome = _execute(job, fastgpt_convention, state.system_helper)
    except BaseException as e:  # a fault of this package, not of the user's code
        outcome = {"exit_code": 1, "error": error("internal", f"sandlot bootstrap: {e!r}")}
    if outcome.get("result_json") is not None and len(outcome["result_json"]) > max_output:
        outcome = {"exit_code": 1, "error": error(
            "output_limit", f"the returned value exceeds the limit of {max_output} bytes")}
    if job["mode"] == "script" and outcome.get("error") and outcome["error"].get("traceback"):
        # Like CPython itself, a script's uncaught exception goes to stderr.
        try:
            sys.stderr.write(outcome["error"]["traceback"])
        except BaseException:
            pass
    return outcome.get("result_json"), outcome.get("exit_code", 0), outcome.get("error")


def _execute(job, fastgpt_convention, system_helper):
    code, mode, memory_mb = job["code"], job["mode"], job["memory_mb"]
    policy = policy_for(job["imports"])
    linecache.cache[USER_FILE] = (len(code), None, code.splitlines(True), USER_FILE)
    try:
        if fastgpt_convention:
            tree = compile(code, USER_FILE, "exec", _ONLY_AST, dont_inherit=True)
            compiled = compile(tree, USER_FILE, "exec", dont_inherit=True)
        else:
            compiled = compile(code, USER_FILE, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as e:  # ValueError: a NUL byte in the source
        return {"exit_code": 1, "error": errors.from_exception(e, memory_mb, "syntax_error")}
    # The zygote's dict itself: this child is used once, so what the run changes in it is gone
    # with the child (copying it would write to every builtin's page instead).
    user_builtins = _user_builtins
    user_builtins["__import__"] = guarded_import(policy, user_builtins)
    if "files" in job:
        files.install(job["files"], user_builtins)
    namespace = {"__name__": "__main__", "__builtins__": user_builtins, "__doc__": None,
                 "SystemHelper": system_helper}
    inputs = _decode(job["inputs"])
    if fastgpt_convention:
        namespace.update(fastgpt.globals_for(system_helper, inputs))
        # FastGPT's variables are module globals too, except over its own names.
        namespace.update({k: v for k, v in inputs.items() if k not in namespace})
    try:
        if fastgpt_convention:
            fastgpt.check_source(tree)
        exec(compiled, namespace)
        if mode == "script":
            return {"exit_code": 0}
        main = namespace.get("main")
        if not callable(main):
            return {"exit_code": 1, "error": error(
                "invalid_return", "no main function: define `def main(...)` returning a dict")}
        if fastgpt_convention:
            value = fastgpt.call_main(main, inputs)
            return {"exit_code": 0,
                    "result_json": convert.encode(value, _encode_result, True)}
        value = main(**inputs)
        if not isinstance(value, dict):
            return {"exit_code": 1, "error": error(
                "invalid_return", f"main() must return a dict, not {type(value).__name__}")}
        return {"exit_code": 0,
                "result_json": convert.encode(value, _encode_result)}
    except SystemExit as e:
        code_ = e.code
        status = code_ if isinstance(code_, int) else (0 if code_ is None else 1)
        if code_ is not None and not isinstance(code_, int):
            sys.stderr.write(f"{code_}\n")
        if mode == "script":
            return {"exit_code": status}
        return {"exit_code": status or 1, "error": error(
            "runtime_error", f"SystemExit: exit({code_!r}) was called inside main()")}
    except convert.InvalidReturn as e:
        return {"exit_code": 1, "error": error("invalid_return", str(e))}
    except BaseException as e:
        return {"exit_code": 1, "error": errors.from_exception(e, memory_mb)}
