"""FastGPT 4.14.8's calling convention for `main`."""

import inspect

_signature = inspect.signature
_Parameter = inspect.Parameter


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
