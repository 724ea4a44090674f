"""What the zygote imports and runs once, before any fork: the whitelist and the lazy paths of
the standard library (and, in the python-data zygote, of numpy, pandas, matplotlib and
jinja2, and the operator's packages), so that no child ever needs to read a file or load an
extension module."""

import encodings
import gc
import pkgutil
import sys
import time
import traceback

from _sandlot import imports, network, run
from _sandlot.errors import USER_FILE
from _sandlot.imports import real_import


def prepare(whitelist):
    """Imports every whitelisted module (and the submodules of packages) and warms the lazy
    paths of the stdlib. Ends with the heap frozen, so a child's collections never touch it."""
    failed = imports.import_whitelist(whitelist)
    _warm_up()
    if failed:
        print("sandlot: whitelisted modules that did not import: " + ", ".join(failed),
              file=sys.stderr)
    run.configure(imports.user_builtins())
    imports.stat_through_open()
    run.rehearse_in_zygote()
    gc.collect()
    gc.freeze()


def prepare_data(site_dir, package_names):
    """The python-data zygote: puts the installed packages first on sys.path and imports them
    with the modules their everyday paths load lazily (a child cannot load an extension module:
    seccomp refuses executable mappings), including one matplotlib render (Agg), so fonts and
    caches are loaded before any child exists."""
    sys.path.insert(0, site_dir)
    for name in package_names:
        real_import(name)
    io = real_import("io")
    steps = [
        lambda: real_import("matplotlib").use("Agg"),
        lambda: real_import("matplotlib.pyplot"),
        lambda: _render_warm_up(io),
        lambda: _pandas_warm_up(io),
        lambda: _numpy_warm_up(),
        lambda: real_import("jinja2").Template(
            "{% for x in xs %}{{ x|upper }}{% endfor %}{{ y|default('-') }}").render(xs=["é"]),
    ]
    for step in steps:
        step()
    # openpyxl (DataFrame.to_excel, read_excel) is imported by the runs that use it;
    # xlsxwriter, which pandas prefers when an operator installed it, by the operator's zygote.
    network.patch_on_import("openpyxl.writer.excel", lambda _: _openpyxl_in_memory())
    network.patch_on_import("xlsxwriter.workbook", _xlsxwriter_in_memory)


def prepare_operator(site_dir, names):
    """The operator's packages (`--python-requirements`): their directory goes on sys.path after
    the standard library (a package must not shadow it) and before the system's site-packages,
    and each of their top-level modules is imported now, so that their extension modules and
    the libraries those link are loaded (and readable to children) before any fork. A module
    that fails is reported, and the rest still serve."""
    index = next((i for i, path in enumerate(sys.path)
                  if path.endswith(("site-packages", "dist-packages"))), len(sys.path))
    sys.path.insert(index, site_dir)
    failed = []
    for name in names:
        try:
            real_import(name)
        except (Exception, SystemExit) as e:
            failed.append(f"{name} ({type(e).__name__}: {e})")
    if failed:
        print("sandlot: operator packages that did not import: " + "; ".join(failed),
              file=sys.stderr)
    if "openpyxl" in sys.modules:
        try:
            _openpyxl_in_memory()
        except Exception as e:  # another openpyxl than the one this was written for
            print(f"sandlot: openpyxl keeps writing temporary files ({e})", file=sys.stderr)


def _xlsxwriter_in_memory(module):
    """xlsxwriter assembles a workbook in temporary files unless told `in_memory`, and a run
    may write no file: in memory is its default here."""
    init = module.Workbook.__init__

    def in_memory_init(self, filename=None, options=None):
        options = dict(options or {})
        options.setdefault("in_memory", True)
        init(self, filename, options)

    module.Workbook.__init__ = in_memory_init


def _openpyxl_in_memory():
    """openpyxl writes each worksheet to a temporary file before it zips the workbook (what
    `DataFrame.to_excel` calls), and a run may write no file: the worksheets stay in memory
    instead (openpyxl's writer reads an in-memory worksheet back as it is)."""
    io = real_import("io")
    writer = real_import("openpyxl.worksheet._writer", None, None, ["WorksheetWriter"])
    excel = real_import("openpyxl.writer.excel", None, None, ["ExcelWriter"])
    writer.create_temporary_file = lambda suffix="": io.BytesIO()
    cleanup = writer.WorksheetWriter.cleanup

    def cleanup_on_disk(self):
        if not isinstance(self.out, io.BytesIO):
            cleanup(self)

    class InMemoryWrites:
        """The workbook's zip archive, taking an in-memory worksheet where a file name was."""

        def __init__(self, archive):
            self._archive = archive

        def write(self, source, arcname=None, *args, **kwargs):
            if isinstance(source, io.BytesIO):
                return self._archive.writestr(arcname, source.getvalue())
            return self._archive.write(source, arcname, *args, **kwargs)

        def __getattr__(self, name):
            return getattr(self._archive, name)

    write_worksheet = excel.ExcelWriter.write_worksheet

    def write_worksheet_in_memory(self, ws):
        archive = self._archive
        self._archive = InMemoryWrites(archive)
        try:
            return write_worksheet(self, ws)
        finally:
            self._archive = archive

    writer.WorksheetWriter.cleanup = cleanup_on_disk
    excel.ExcelWriter.write_worksheet = write_worksheet_in_memory


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
            real_import("encodings." + module.name)
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
