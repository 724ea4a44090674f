# Imports every module of the data packages (test packages aside) and reports which failed
# and why. Runs both in a sandlot child (`main`) and on the host (`python3 -s -S` with the same
# site directory), so the test can tell what the jail breaks from what is missing anyway.
import os
import sys

import jinja2  # the import statements send the run to the zygote with the packages
import matplotlib
import numpy
import pandas
import tabulate

PACKAGES = ("numpy", "pandas", "matplotlib", "jinja2", "tabulate")
SKIP = {"tests", "test", "testing", "_testing", "conftest", "__pycache__", "__main__"}


def modules(package):
    if not hasattr(package, "__path__"):  # a single-file module
        yield package.__name__
        return
    root = os.path.dirname(package.__file__)
    base = os.path.dirname(root)
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP
                         and os.path.isfile(os.path.join(directory, d, "__init__.py")))
        for name in sorted(files):
            if name.endswith(".py"):
                stem = name[:-3]
            elif name.endswith(".so"):
                stem = name.split(".")[0]
            else:
                continue
            if stem in SKIP or stem.startswith("test_"):
                continue
            parts = os.path.relpath(os.path.join(directory, stem), base).split(os.sep)
            if parts[-1] == "__init__":
                parts.pop()
            yield ".".join(parts)


def main():
    failures = {}
    names = []
    for top in PACKAGES:
        for name in modules(__import__(top)):
            names.append(name)
            try:
                __import__(name)
            except BaseException as e:
                failures[name] = f"{type(e).__name__}: {e}"[:300]
    return {
        "python": "%d.%d" % sys.version_info[:2],
        "site": os.path.dirname(os.path.dirname(__import__("numpy").__file__)),
        "modules": names,
        "failures": failures,
    }


if sys.argv[1:] == ["--on-the-host"]:
    import json
    import warnings
    warnings.simplefilter("ignore")
    result = main()
    sys.stdout.flush()
    sys.__stdout__.write("\n@@" + json.dumps(result) + "\n")
