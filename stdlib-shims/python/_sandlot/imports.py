"""The import policy: which modules user code may name.

It turns `import os` into a clear error. It is policy, not the boundary: code that walks the
object graph to `os` anyway lands in a process that the kernel has already confined.
"""

import builtins
import os
import pkgutil
import sys
import types

_real_import = builtins.__import__
_ModuleType = types.ModuleType


class ModuleNotAllowedError(ImportError):
    """An import that the sandbox's allowlist refuses."""


ModuleNotAllowedError.__module__ = "builtins"  # tracebacks name it without our module


# What libraries ask to be run in a child after a fork (matplotlib drops its font cache, whose
# open files a child no longer has; random reseeds). The zygote forks without CPython's hooks
# (src/zygote/python.rs), so the run calls these itself: recorded here, before any library is
# imported. threading's own hook is left out: a zygote has no other thread to forget.
_after_fork_in_child = []
_register_at_fork = os.register_at_fork


def _recording_register_at_fork(**hooks):
    after_in_child = hooks.get("after_in_child")
    if after_in_child is not None and getattr(after_in_child, "__module__", "") != "threading":
        _after_fork_in_child.append(after_in_child)
    _register_at_fork(**hooks)


os.register_at_fork = _recording_register_at_fork


def after_fork_in_child():
    """Runs the libraries' after-fork callbacks, in the order they were registered."""
    for hook in _after_fork_in_child:
        hook()


def real_import(name, *args):
    """The interpreter's own import, for sandlot's code."""
    return _real_import(name, *args)


def import_whitelist(whitelist):
    """Imports every whitelisted module and the submodules of packages (a child cannot load
    what the zygote did not); returns the ones that failed, as "name (why)"."""
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
    return failed


def guarded_import(allowed, user_builtins):
    """The `__import__` of one run: `allowed` top-level names, and `builtins` as the run's own
    builtins (open refused, imports guarded)."""
    builtins_module = []

    def __import__(name, globals=None, locals=None, fromlist=(), level=0):
        if level:
            raise ModuleNotAllowedError(
                "relative imports are not available in the sandbox", name=name)
        if name == "builtins":
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


def open_refused(*args, **kwargs):
    raise PermissionError("open() is not allowed in the sandbox: code runs without file access")


def user_builtins():
    """The builtins user code sees, before its import is guarded: open() refused."""
    names = dict(builtins.__dict__)
    names["open"] = open_refused
    return names


sys.dont_write_bytecode = True
