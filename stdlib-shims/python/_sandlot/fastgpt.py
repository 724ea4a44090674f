"""FastGPT 4.14.8's ways: how `main` is called, the helpers old FastGPT code nodes call, and its
check that refuses `__subclasses__` in the user's code before it runs."""

import ast
import base64
import hmac
import inspect
import json
import math
import time
import urllib.parse

_signature = inspect.signature
_Parameter = inspect.Parameter
_quote = urllib.parse.quote


def call_main(main, variables):
    """No parameters, main(); one, main(variables[p]) when p is a key, else main(variables);
    several, by name, with defaults (a missing one fails, "Missing")."""
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


def check_source(tree):
    """FastGPT's pre-check of the user's code (a parsed module): `x.__subclasses__` and
    `getattr(x, '__subclasses__')` are refused before anything runs. The kernel, not this, is
    the boundary; it is FastGPT's behaviour, kept on its routes."""
    for node in ast.walk(tree):
        attribute = isinstance(node, ast.Attribute) and node.attr == "__subclasses__"
        dynamic = (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                   and node.func.id == "getattr" and len(node.args) >= 2
                   and isinstance(node.args[1], ast.Constant)
                   and node.args[1].value == "__subclasses__")
        if attribute or dynamic:
            raise RuntimeError("Access to __subclasses__ is not allowed in sandbox")


def globals_for(system_helper, variables):
    """What FastGPT's worker puts in a run's globals beside the variables: the helpers, its
    SystemHelper under two names, the variables as one dict, and json, math and time."""
    http_request = system_helper.httpRequest

    def count_token(text):
        if not isinstance(text, str):
            text = str(text)
        return math.ceil(len(text) / 4)

    def str_to_base64(text, prefix=""):
        return prefix + base64.b64encode(text.encode("utf-8")).decode("utf-8")

    def create_hmac(algorithm, secret):
        timestamp = str(int(time.time() * 1000))
        digest = hmac.new(secret.encode("utf-8"), f"{timestamp}\n{secret}".encode("utf-8"),
                          algorithm).digest()
        return {"timestamp": timestamp, "sign": _quote(base64.b64encode(digest).decode("utf-8"))}

    def delay(ms):
        if ms > 10000:
            raise ValueError("Delay must be <= 10000ms")
        time.sleep(ms / 1000)

    return {"variables": variables, "system_helper": system_helper,
            "http_request": http_request, "count_token": count_token,
            "str_to_base64": str_to_base64, "create_hmac": create_hmac, "delay": delay,
            "json": json, "math": math, "time": time}
