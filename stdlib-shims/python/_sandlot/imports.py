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
    """Imports every listed module, and the submodules of a package named without a dot;
    returns the ones that failed, as "name (why)"."""
    failed = []
    for name in whitelist:
        try:
            module = _real_import(name)
        except Exception as e:  # a broken install: report it, keep the rest
            failed.append(f"{name} ({e})")
            continue
        if "." in name:
            continue
        for sub in pkgutil.walk_packages(getattr(module, "__path__", []), name + "."):
            if ".test" in sub.name or sub.name.endswith("__main__"):
                continue
            try:
                _real_import(sub.name)
            except Exception:
                pass
    return failed


_STANDARD_LIBRARY = sys.stdlib_module_names


class Policy:
    """A run's import policy (protocol.rs's ImportPolicy): `only` these modules; the
    `standard_library` but what its rule refuses, and the rule's packages and the operator's;
    or `any`. `policy_for` makes one."""

    def __init__(self, kind, modules=frozenset(), refused=frozenset(), packages=frozenset()):
        self.kind = kind
        self.modules = modules
        self.refused = refused
        self.packages = packages

    def permits(self, top):
        if self.kind == "only":
            return top in self.modules
        if self.kind == "standard_library":
            return ((top in _STANDARD_LIBRARY and top not in self.refused)
                    or top in self.packages)
        return True

    def why_not(self, top):
        """Why `permits(top)` is false, in words for the user."""
        if self.kind == "only":
            return "it is not in the allowlist"
        # FastGPT's clients look for "not in the allowlist"; the rest says which list.
        if top in self.refused:
            return "it is not in the allowlist (the sandbox refuses it)"
        return "it is not in the allowlist (neither standard library nor an installed package)"

    def describe(self):
        if self.kind == "only":
            return ", ".join(sorted(self.modules))
        if self.kind == "standard_library":
            return (f"the standard library except {', '.join(sorted(self.refused))}; "
                    f"and {', '.join(sorted(self.packages))}")
        return "any module"


# The rules over the standard library, by name ("native", "fastgpt"), each a Policy built in
# the zygote: a run of one of them builds nothing.
_standard_rules = {}


def set_standard_rules(rules):
    """The zygote's: `rules` maps each rule's name to (refused, packages)."""
    for name, (refused, packages) in rules.items():
        _standard_rules[name] = Policy("standard_library", refused=frozenset(refused),
                                       packages=frozenset(packages))


def policy_for(imports):
    """The Policy of a job's `imports`."""
    kind = imports["kind"]
    if kind == "standard_library":
        rule = _standard_rules[imports["rule"]]
        operator = imports["operator"]
        if not operator:
            return rule
        return Policy(kind, refused=rule.refused, packages=rule.packages | frozenset(operator))
    if kind == "only":
        return Policy(kind, modules=frozenset(imports["modules"]))
    return Policy(kind)


def guarded_import(policy, user_builtins):
    """The `__import__` of one run's code: what its `Policy` permits, and `builtins` as the
    run's own builtins (open refused, imports guarded). Imports made by the modules themselves
    go through the real import: only the user's own code is held to the policy."""
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
        if not policy.permits(top):
            raise ModuleNotAllowedError(
                f"import of module '{top}' is not allowed: {policy.why_not(top)}. "
                f"Allowed modules: {policy.describe()}", name=top)
        try:
            return _real_import(name, globals, locals, fromlist, level)
        except ModuleNotFoundError as e:
            if e.name != top or top not in policy.packages:
                raise
            # A data package, in the interpreter without them: the server picks that one by
            # the code's import statements, which this import was not.
            raise ModuleNotAllowedError(
                f"import of module '{top}' is not available here: code that uses the data "
                f"packages must import them with an import statement (`import {top}`), which "
                "runs it where they are installed", name=top) from None
        except (PermissionError, ImportError) as e:
            refused = refused_by_jail(e)
            # The import policy's own refusal, and the broker's (network_denied), say it already.
            if refused is None or isinstance(e, ModuleNotAllowedError) \
                    or type(e).__name__ == "NetworkDeniedError":
                raise
            raise ModuleNotAllowedError(
                f"import of module '{name}' needs what the sandbox refuses: {refused} "
                f"({type(e).__name__}: {e}). A run may read only the interpreter's and the "
                "installed packages' files, and may not write files, open sockets or start "
                "processes", name=top) from None

    return __import__


def refused_by_jail(error):
    """What the jail refused, in words, when `error` (raised while importing) is its refusal:
    a PermissionError (a file Landlock does not let the run read, a call seccomp refuses), or
    the dynamic loader's "Permission denied" for a shared library; else None."""
    if isinstance(error, PermissionError):
        if error.filename is not None:
            return f"opening {error.filename}"
        return "a system call (operation not permitted)"
    text = str(error)
    if "Permission denied" in text or "Operation not permitted" in text:
        library = text.split(":", 1)[0].strip()
        return f"loading the shared library {library}" if ".so" in library else text
    return None


def stat_through_open():
    """Lets code in a child stat the files it may read: the import system (finding a module it
    was not given in the zygote), `os.stat` and `os.path.exists` (zoneinfo finding a zone).
    seccomp refuses `stat()` of a path — a path's metadata would tell which host files exist,
    how large and how old, and Landlock does not hide it. The same facts through a descriptor
    opened read-only are what Landlock allows: the files the interpreter may read. Installed
    last in the zygote, so it is what every child uses."""
    external = sys.modules["_frozen_importlib_external"]
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
    _open, _fstat, _close, _stat = os.open, os.fstat, os.close, os.stat

    def _path_stat(path):
        fd = _open(path, flags)
        try:
            return _fstat(fd)
        finally:
            _close(fd)

    def stat(path, *, dir_fd=None, follow_symlinks=True):
        if isinstance(path, int) or dir_fd is not None or not follow_symlinks:
            return _stat(path, dir_fd=dir_fd, follow_symlinks=follow_symlinks)
        return _path_stat(path)

    external._path_stat = _path_stat
    os.stat = stat


def open_refused(*args, **kwargs):
    raise PermissionError("open() is not allowed in the sandbox: code runs without file access")


def user_builtins():
    """The builtins user code sees, before its import is guarded: open() refused."""
    names = dict(builtins.__dict__)
    names["open"] = open_refused
    return names


sys.dont_write_bytecode = True
