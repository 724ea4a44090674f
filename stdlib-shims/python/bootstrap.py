"""sandlot's Python side: the import policy, output capture, and running one job.

The zygote imports this module once and calls prepare(). Each child calls run() exactly once,
after its jail is in place; run() ends by handing its report to finish(), which writes it to
the server and ends the process, so nothing here ever returns to the child's caller.

The import hook is policy, not the boundary: it turns `import os` into a clear error. Code that
walks the object graph to `os` anyway lands in a process that the kernel has already confined.
"""

import builtins
import encodings
import gc
import inspect
import json
import linecache
import math
import pkgutil
import sys
import time
import traceback
import types

# User code shares these modules and may patch them (`json.dumps = ...`); the bootstrap keeps
# its own references, taken before any user code runs.
_encode_report = json.JSONEncoder(ensure_ascii=False).encode
_encode_result = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode
_encode_key = json.JSONEncoder().encode
_decode = json.JSONDecoder().decode
_encode_request = json.JSONEncoder(default=str).encode
_perf_counter = time.perf_counter
_isfinite = math.isfinite
_signature = inspect.signature
_Parameter = inspect.Parameter
_ModuleType = types.ModuleType
_datetime = __import__("datetime")
_Decimal = __import__("decimal").Decimal

USER_FILE = "<code>"
BOOTSTRAP_FILE = "<sandlot-bootstrap>"

_real_import = builtins.__import__
_user_builtins = {}
_whitelist = frozenset()


class ModuleNotAllowedError(ImportError):
    """An import that the sandbox's allowlist refuses."""


ModuleNotAllowedError.__module__ = "builtins"  # tracebacks name it without our module


class _InvalidReturn(Exception):
    pass


class NetworkDeniedError(PermissionError):
    """A request SystemHelper.httpRequest refused: the destination, the run's budget, or the
    server's policy. Uncaught, the run's error kind is network_denied."""


NetworkDeniedError.__module__ = "builtins"


class _SystemHelper:
    """FastGPT's SystemHelper: HTTP performed by the server, which checks every destination."""

    NetworkDeniedError = NetworkDeniedError

    def __init__(self, broker):
        self._broker = broker

    def httpRequest(self, url, method="GET", headers=None, body=None, timeout=60):
        """Returns {"status", "headers", "data"}; data is parsed JSON when the response is."""
        if isinstance(body, (bytes, bytearray)):
            body = bytes(body).decode("utf-8", "replace")
        request = {"url": str(url), "method": str(method), "headers": dict(headers or {}),
                   "body": body, "timeout": timeout}
        try:
            encoded = _encode_request(request)
        except (TypeError, ValueError) as e:
            raise TypeError(f"httpRequest: the request cannot be sent: {e}") from None
        answer = _decode(self._broker(encoded.encode("utf-8")).decode("utf-8"))
        if "error" in answer:
            error = answer["error"]
            kind = NetworkDeniedError if error.get("denied") else ConnectionError
            raise kind(error.get("message", "the request failed"))
        return answer["ok"]


def _open_refused(*args, **kwargs):
    raise PermissionError("open() is not allowed in the sandbox: code runs without file access")


# ---------------------------------------------------------------------------------------------
# In the zygote
# ---------------------------------------------------------------------------------------------


def prepare(whitelist, prepared=()):
    """Imports every whitelisted module (and the submodules of packages) and warms the lazy
    paths of the stdlib, so that no child ever needs to read a file. `prepared` are allowed
    packages already imported their own way (prepare_data)."""
    global _user_builtins, _whitelist
    _whitelist = frozenset(whitelist) | frozenset(prepared)
    failed = []
    for name in whitelist:
        try:
            module = _real_import(name)
        except Exception as e:  # a broken install: report it, keep the rest
            failed.append(f"{name} ({e})")
            continue
        for sub in pkgutil.walk_packages(getattr(module, "__path__", []), name + "."):
            if ".test" in sub.name or sub.name.endswith("__main__"):
                continue
            try:
                _real_import(sub.name)
            except Exception:
                pass
    _warm_up()
    if failed:
        print("sandlot: whitelisted modules that did not import: " + ", ".join(failed),
              file=sys.stderr)
    _user_builtins = dict(builtins.__dict__)
    _user_builtins["open"] = _open_refused
    sys.dont_write_bytecode = True
    gc.collect()
    gc.freeze()


def prepare_data(site_dir, package_names):
    """The python-data zygote: puts the installed packages first on sys.path and imports them
    with the modules their everyday paths load lazily (a child cannot load an extension module:
    seccomp refuses executable mappings), including one matplotlib render (Agg), so fonts and
    caches are loaded before any child exists."""
    sys.path.insert(0, site_dir)
    for name in package_names:
        _real_import(name)
    io = _real_import("io")
    steps = [
        lambda: _real_import("matplotlib").use("Agg"),
        lambda: _real_import("matplotlib.pyplot"),
        lambda: _render_warm_up(io),
        lambda: _pandas_warm_up(io),
        lambda: _numpy_warm_up(),
        lambda: _real_import("jinja2").Template(
            "{% for x in xs %}{{ x|upper }}{% endfor %}{{ y|default('-') }}").render(xs=["é"]),
    ]
    for step in steps:
        step()


def _render_warm_up(io):
    plt = sys.modules["matplotlib.pyplot"]
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [3, 1, 2], label="é")
    ax.bar([1, 2], [2, 3])
    ax.scatter([1], [2])
    ax.hist([1, 2, 2, 3])
    ax.set_title("warm-up ✓")
    ax.legend()
    fig.savefig(io.BytesIO(), format="png")
    plt.close("all")


def _pandas_warm_up(io):
    pd = sys.modules["pandas"]
    df = pd.DataFrame({"a": [1, 2, 2], "b": [1.5, None, 3.0], "c": ["x", "y", "z"],
                       "d": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"])})
    df.groupby("a").agg({"b": "sum"}).reset_index()
    df.groupby("a")["b"].mean()
    df.describe()
    df.sort_values("b").head(2)
    df.merge(df, on="a")
    df.pivot_table(index="a", values="b", aggfunc="mean")
    df.to_dict(orient="records")
    df.to_json()
    df.to_csv()
    df["d"].dt.strftime("%Y")
    pd.read_csv(io.StringIO("a,b\n1,2\n"))
    pd.read_json(io.StringIO('[{"a": 1}]'))
    pd.Series([1, 2]).rolling(2).mean()
    pd.Timestamp("2024-01-01").isoformat()


def _numpy_warm_up():
    np = sys.modules["numpy"]
    np.linalg.inv(np.eye(2))
    np.random.default_rng(0).random(3)
    np.random.rand(2)
    np.fft.fft([1.0, 2.0])
    np.percentile([1, 2, 3], 50)
    np.polyfit([0, 1, 2], [0, 1, 4], 2)


def _warm_up():
    """Runs the stdlib paths that import or read something on first use."""
    for module in pkgutil.iter_modules(encodings.__path__):
        try:
            _real_import("encodings." + module.name)
        except Exception:
            pass
    steps = [
        lambda: __import__("datetime").datetime.strptime("2024-01-02 03:04", "%Y-%m-%d %H:%M"),
        lambda: time.strptime("2024", "%Y"),
        lambda: time.strftime("%c %Z", time.localtime()),
        lambda: __import__("datetime").datetime.now().astimezone(),
        lambda: __import__("hmac").new(b"k", b"m", "sha256").hexdigest(),
        lambda: __import__("uuid").uuid4(),
        lambda: __import__("secrets").token_hex(4),
        lambda: __import__("random").random(),
        lambda: __import__("statistics").stdev([1.0, 2.0, 4.0]),
        lambda: __import__("decimal").Decimal("1.10").quantize(__import__("decimal").Decimal("1")),
        lambda: "{:,.2f} {:n}".format(1234.5, 1234),
        lambda: "é".encode("idna"),
        lambda: compile("x = 1", USER_FILE, "exec"),
        lambda: traceback.format_exception(ValueError("warm")),
    ]
    hashlib = __import__("hashlib")
    for algorithm in sorted(hashlib.algorithms_available):
        steps.append(lambda a=algorithm: hashlib.new(a, b"x"))
    for step in steps:
        try:
            step()
        except Exception:
            pass


# ---------------------------------------------------------------------------------------------
# In a child
# ---------------------------------------------------------------------------------------------


class _Output:
    """stdout and stderr of one run, held in memory up to the run's byte limit."""

    def __init__(self, limit, on_overflow):
        self.limit = limit
        self.used = 0
        self.parts = ([], [])
        self.on_overflow = on_overflow

    def add(self, index, text):
        size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
        if self.used + size > self.limit:
            room = self.limit - self.used
            if room > 0:
                self.parts[index].append(
                    text.encode("utf-8", "surrogatepass")[:room].decode("utf-8", "ignore"))
            self.used = self.limit
            self.on_overflow()
        self.used += size
        self.parts[index].append(text)

    def texts(self):
        return "".join(self.parts[0]), "".join(self.parts[1])


class _Stream:
    """The sys.stdout / sys.stderr a run sees."""

    encoding = "utf-8"
    errors = "strict"

    def __init__(self, output, index, name):
        self._output = output
        self._index = index
        self.name = name

    def write(self, text):
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self._output.add(self._index, text)
        return len(text)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        pass

    def isatty(self):
        return False

    def writable(self):
        return True

    def readable(self):
        return False


def run(code, inputs_json, mode, allowed_modules, fastgpt, max_output, memory_mb, finish,
        broker):
    """Runs one job and sends its report through finish(); never returns. `fastgpt` selects
    FastGPT's calling convention (see _call_fastgpt) and one output stream for its log."""
    started = _perf_counter()

    def send(result_json=None, exit_code=0, error=None):
        images = _collect_figures()
        stdout, stderr = output.texts()
        finish(result_json, exit_code, None if error is None else _encode_report(error),
               stdout, stderr, _encode_report(images), (_perf_counter() - started) * 1000.0)

    def overflow():
        send(exit_code=1, error=_error("output_limit",
                                       f"output exceeded the limit of {max_output} bytes"))

    output = _Output(max_output, overflow)
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed()  # the zygote's state would be every child's: fresh from the OS
    sys.stdout = _Stream(output, 0, "<stdout>")
    sys.stderr = _Stream(output, 0 if fastgpt else 1, "<stderr>")
    try:
        outcome = _execute(code, inputs_json, mode, frozenset(allowed_modules), memory_mb, fastgpt,
                           _SystemHelper(broker))
    except BaseException as e:  # a fault of this module, not of the user's code
        outcome = {"exit_code": 1, "error": _error("internal", f"sandlot bootstrap: {e!r}")}
    if outcome.get("result_json") is not None and len(outcome["result_json"]) > max_output:
        outcome = {"exit_code": 1, "error": _error(
            "output_limit", f"the returned value exceeds the limit of {max_output} bytes")}
    if mode == "script" and outcome.get("error") and outcome["error"].get("traceback"):
        # Like CPython itself, a script's uncaught exception goes to stderr.
        try:
            sys.stderr.write(outcome["error"]["traceback"])
        except BaseException:
            pass
    send(outcome.get("result_json"), outcome.get("exit_code", 0), outcome.get("error"))


MAX_IMAGES = 16
MAX_IMAGE_BYTES = 5 * 1024 * 1024


def _collect_figures():
    """matplotlib figures left open, as PNG: `{"format": "png", "base64": ...}` each."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return []
    images = []
    try:
        io = _real_import("io")
        base64 = _real_import("base64")
        for number in plt.get_fignums()[:MAX_IMAGES]:
            buffer = io.BytesIO()
            plt.figure(number).savefig(buffer, format="png")
            data = buffer.getvalue()
            if len(data) > MAX_IMAGE_BYTES:
                sys.stderr.write(f"sandlot: figure {number} is over {MAX_IMAGE_BYTES} bytes "
                                 "as PNG and was left out\n")
                continue
            images.append({"format": "png", "base64": base64.b64encode(data).decode("ascii")})
        plt.close("all")
    except BaseException as e:
        sys.stderr.write(f"sandlot: a figure could not be rendered: {e!r}\n")
    return images


def _execute(code, inputs_json, mode, allowed, memory_mb, fastgpt, system_helper):
    linecache.cache[USER_FILE] = (len(code), None, code.splitlines(True), USER_FILE)
    try:
        compiled = compile(code, USER_FILE, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as e:  # ValueError: a NUL byte in the source
        return {"exit_code": 1, "error": _exception_error(e, memory_mb, "syntax_error")}
    user_builtins = dict(_user_builtins)
    user_builtins["__import__"] = _guarded_import(allowed, user_builtins)
    namespace = {"__name__": "__main__", "__builtins__": user_builtins, "__doc__": None,
                 "SystemHelper": system_helper}
    inputs = _decode(inputs_json)
    if fastgpt:
        namespace.update(inputs)  # FastGPT's variables are module globals too
    try:
        exec(compiled, namespace)
        if mode == "script":
            return {"exit_code": 0}
        main = namespace.get("main")
        if not callable(main):
            return {"exit_code": 1, "error": _error(
                "invalid_return", "no main function: define `def main(...)` returning a dict")}
        if fastgpt:
            value = _call_fastgpt(main, inputs)
            return {"exit_code": 0,
                    "result_json": _encode_result(_to_json(value, "result", set(), True))}
        value = main(**inputs)
        if not isinstance(value, dict):
            return {"exit_code": 1, "error": _error(
                "invalid_return", f"main() must return a dict, not {type(value).__name__}")}
        converted = _to_json(value, "result", set())
        return {"exit_code": 0,
                "result_json": _encode_result(converted)}
    except SystemExit as e:
        code_ = e.code
        status = code_ if isinstance(code_, int) else (0 if code_ is None else 1)
        if code_ is not None and not isinstance(code_, int):
            sys.stderr.write(f"{code_}\n")
        if mode == "script":
            return {"exit_code": status}
        return {"exit_code": status or 1, "error": _error(
            "runtime_error", f"SystemExit: exit({code_!r}) was called inside main()")}
    except _InvalidReturn as e:
        return {"exit_code": 1, "error": _error("invalid_return", str(e))}
    except BaseException as e:
        return {"exit_code": 1, "error": _exception_error(e, memory_mb)}


def _call_fastgpt(main, variables):
    """FastGPT 4.14.8's call: no parameters, main(); one, main(variables[p]) when p is a key,
    else main(variables); several, by name, with defaults (a missing one fails, "Missing")."""
    parameters = list(_signature(main).parameters.values())
    named = [p for p in parameters if p.kind in (
        _Parameter.POSITIONAL_ONLY, _Parameter.POSITIONAL_OR_KEYWORD, _Parameter.KEYWORD_ONLY)]
    takes_rest = any(p.kind == _Parameter.VAR_KEYWORD for p in parameters)
    if not named:
        return main(**variables) if takes_rest else main()
    if len(named) == 1 and not takes_rest and named[0].kind != _Parameter.KEYWORD_ONLY:
        name = named[0].name
        return main(variables[name] if name in variables else variables)
    arguments, missing = {}, []
    for p in named:
        if p.name in variables:
            arguments[p.name] = variables[p.name]
        elif p.default is _Parameter.empty:
            missing.append(p.name)
    if missing:
        raise TypeError(f"Missing required argument(s) for main(): {', '.join(missing)}")
    if takes_rest:
        arguments.update({k: v for k, v in variables.items() if k not in arguments})
    positional = [arguments.pop(p.name) for p in named
                  if p.kind == _Parameter.POSITIONAL_ONLY and p.name in arguments]
    return main(*positional, **arguments)


def _guarded_import(allowed, user_builtins):
    builtins_module = []

    def __import__(name, globals=None, locals=None, fromlist=(), level=0):
        if level:
            raise ModuleNotAllowedError(
                "relative imports are not available in the sandbox", name=name)
        if name == "builtins":
            # The run's own builtins (open refused, imports guarded), as a module.
            if not builtins_module:
                module = _ModuleType("builtins")
                module.__dict__.update(user_builtins)
                builtins_module.append(module)
            return builtins_module[0]
        top = name.partition(".")[0]
        if top not in allowed:
            raise ModuleNotAllowedError(
                f"import of module '{top}' is not allowed: it is not in the allowlist. "
                f"Allowed modules: {', '.join(sorted(allowed))}", name=top)
        return _real_import(name, globals, locals, fromlist, level)

    return __import__


def _to_json(value, path, active, lenient=False):
    """A JSON-ready copy of a returned value; NaN and infinities become None. `lenient` turns
    what JSON has no type for into its str() (json.dumps' default=str, as FastGPT does)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if _isfinite(value) else None
    if isinstance(value, (dict, list, tuple)):
        if id(value) in active:
            raise _InvalidReturn(f"{path} refers back to itself; JSON cannot carry a cycle")
        active.add(id(value))
        try:
            if isinstance(value, dict):
                out = {}
                for key, item in value.items():
                    if isinstance(key, str):
                        name = key
                    elif key is None or isinstance(key, (bool, int, float)):
                        name = _encode_key(key)
                    else:
                        raise _InvalidReturn(
                            f"{path} has a key of type {type(key).__name__}; "
                            "JSON object keys must be strings")
                    out[name] = _to_json(item, f"{path}.{name}", active, lenient)
                return out
            return [_to_json(item, f"{path}[{i}]", active, lenient)
                    for i, item in enumerate(value)]
        finally:
            active.discard(id(value))
    # Only what is neither a JSON type nor a container pays for the special cases.
    converted = _convert_special(value, lenient)
    if converted is not _NOT_SPECIAL:
        return _to_json(converted, path, active, lenient)
    if lenient:
        return str(value)
    raise _InvalidReturn(
        f"{path} is of type {type(value).__name__}, which JSON cannot carry; "
        "convert it to a str, number, bool, None, list or dict")


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


_NOT_SPECIAL = object()


def _convert_special(value, lenient):
    """numpy and pandas values, dates and decimals as plain Python (or _NOT_SPECIAL)."""
    module = type(value).__module__ or ""
    if module.startswith("numpy"):
        if hasattr(value, "tolist"):
            return value.tolist()  # arrays to lists, scalars to int/float/bool
    if module.startswith("pandas"):
        name = type(value).__name__
        if name == "DataFrame":
            return value.to_dict(orient="records")
        if name in ("Series", "Index", "DatetimeIndex", "Categorical"):
            return value.tolist()
        if name == "NaTType":
            return None
        if name == "Timestamp":
            return str(value) if lenient else value.isoformat()
        if name == "Timedelta":
            return str(value)
        if name in ("NAType",):
            return None
    if isinstance(value, (_datetime.datetime, _datetime.date, _datetime.time)):
        return str(value) if lenient else value.isoformat()
    if isinstance(value, _Decimal):
        if value.is_nan() or value.is_infinite():
            return None
        return str(value)
    return _NOT_SPECIAL


def _error(kind, message, line=None, column=None, tb=None):
    return {"kind": kind, "message": message, "line": line, "column": column, "traceback": tb}


def _exception_error(exc, memory_mb, kind=None):
    if kind is not None:
        message = _one_line(exc)
    elif isinstance(exc, ModuleNotAllowedError):
        kind, message = "module_not_allowed", str(exc)
    elif isinstance(exc, NetworkDeniedError):
        kind, message = "network_denied", _one_line(exc)
    elif isinstance(exc, MemoryError):
        kind = "memory_limit"
        message = f"memory limit exceeded: the run may use {memory_mb} MB (MemoryError)"
    else:
        kind, message = "runtime_error", _one_line(exc)
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
    return _error(kind, message, line, column, _format_chain(exc))


def _one_line(exc):
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _user_frames(tb):
    """The frames of a traceback from the first frame of user code on, without this module's."""
    while tb is not None and tb.tb_frame.f_code.co_filename != USER_FILE:
        tb = tb.tb_next
    return [f for f in traceback.extract_tb(tb) if f.filename != BOOTSTRAP_FILE]


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
