"""The run's files: those the request gave, read-only beside the code (`open("data.csv")`), and
those the code writes into `output/`, which the host keeps in the run's output file and the
server returns with the response — even when the run times out or is killed. No file of a run
is on a disk: the jail lets a child write nothing, so these names are served here, by `open`
(builtins, `io`, and so pathlib, pandas, openpyxl, matplotlib), `os.stat` (so `os.path.exists`,
`isfile`, `isdir`, `getsize`), `os.listdir`, `os.mkdir` and `os.makedirs`. Any other path goes
to the real functions, where the jail decides; user code's own `open` refuses it plainly."""

import builtins
import errno
import io
import os
import posixpath

RUN_DIR = "/sandbox"
OUTPUT_DIR = RUN_DIR + "/output"

_real_open = io.open
_real_listdir = os.listdir
_real_mkdir = os.mkdir

# host(0, name) -> index; host(1, index, offset, bytes); host(2, index). OSError(ENOSPC) past
# a cap, OSError(EINVAL) for a name that cannot be a file.
_host = None
_inputs = {}
# Output files by name: [index, bytearray of their bytes].
_outputs = {}


def connect(host):
    global _host
    _host = host


def install(files, user_builtins):
    """Serves the run's files from now on (in a child, before the code runs)."""
    for name, data in files:
        _inputs[name] = data
    os.environ["SANDLOT_OUTPUT_DIR"] = OUTPUT_DIR
    builtins.open = io.open = _open
    os.stat = _stat_wrapping(os.stat)
    os.listdir = _listdir
    os.mkdir = _mkdir
    os.makedirs = _makedirs

    def user_open(file, mode="r", *args, **kwargs):
        if _where(file) is None:
            raise PermissionError(
                f"open() is not allowed in the sandbox for {file!r}: code reads only the run's "
                f"own files ({', '.join(sorted(_inputs)) or 'none were given'}) and writes only "
                f"into output/")
        return _open(file, mode, *args, **kwargs)

    user_builtins["open"] = user_open


def _where(path):
    """('run' | 'output' | 'input' | 'output_file', name) for a path the run's files answer,
    else None."""
    if isinstance(path, int):
        return None
    try:
        path = os.fspath(path)
    except TypeError:
        return None
    if isinstance(path, bytes):
        path = path.decode("utf-8", "surrogateescape")
    if not path:
        return None
    full = posixpath.normpath(posixpath.join(RUN_DIR, path))
    if full == RUN_DIR:
        return ("run", "")
    if full == OUTPUT_DIR:
        return ("output", "")
    parent, name = posixpath.split(full)
    if parent == OUTPUT_DIR:
        return ("output_file", name)
    if parent == RUN_DIR and name in _inputs:
        return ("input", name)
    return None


def _open(file, mode="r", buffering=-1, encoding=None, errors=None, newline=None,
          closefd=True, opener=None):
    where = _where(file)
    if where is None:
        return _real_open(file, mode, buffering, encoding, errors, newline, closefd, opener)
    kind, name = where
    shown = os.fspath(file) if not isinstance(file, int) else file
    writing = any(c in mode for c in "wax+")
    if kind in ("run", "output"):
        raise IsADirectoryError(errno.EISDIR, "Is a directory", shown)
    if kind == "input":
        if writing:
            raise PermissionError(errno.EACCES, "the run's input files are read-only; write "
                                  "into output/ instead", shown)
        raw = _Reader(bytes(_inputs[name]), shown)
    elif not writing:
        if name not in _outputs:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", shown)
        raw = _Reader(bytes(_outputs[name][1]), shown)
    else:
        if "x" in mode and name in _outputs:
            raise FileExistsError(errno.EEXIST, "File exists", shown)
        if "w" in mode or "x" in mode or name not in _outputs:
            _outputs[name] = [_call(0, name, shown), bytearray()]
        raw = _Writer(name, shown, "+" in mode, "a" in mode)
    if "b" in mode:
        if isinstance(raw, _Reader):
            return raw
        return io.BufferedRandom(raw) if "+" in mode else io.BufferedWriter(raw)
    buffered = raw if isinstance(raw, _Reader) else (
        io.BufferedRandom(raw) if "+" in mode else io.BufferedWriter(raw))
    text = io.TextIOWrapper(buffered, encoding=encoding or "utf-8", errors=errors,
                            newline=newline, line_buffering=buffering == 1)
    text.mode = mode
    return text


def _call(op, *args):
    shown = args[-1]
    try:
        return _host(op, *args[:-1])
    except OSError as e:
        raise OSError(e.errno, e.strerror, shown) from None


class _Reader(io.BytesIO):
    """A file read from memory: an input, or an output as far as it is written."""

    def __init__(self, data, name):
        super().__init__(data)
        self.name = name
        self.mode = "rb"


class _Writer(io.RawIOBase):
    """A file of output/: every write goes to the host at once (what a killed run had written
    is kept), and to this run's copy, which reads back."""

    def __init__(self, name, shown, readable, append):
        super().__init__()
        self._file = name
        self.name = shown
        self.mode = "wb"
        self._readable = readable
        self._append = append
        self._pos = len(_outputs[name][1]) if append else 0

    def readable(self):
        return self._readable

    def writable(self):
        return True

    def seekable(self):
        return True

    def _entry(self):
        return _outputs[self._file]

    def write(self, b):
        data = bytes(b)
        index, copy = self._entry()
        if self._append:
            self._pos = len(copy)
        _call(1, index, self._pos, data, self.name)
        end = self._pos + len(data)
        if len(copy) < end:
            copy.extend(bytes(end - len(copy)))
        copy[self._pos:end] = data
        self._pos = end
        return len(data)

    def readinto(self, b):
        copy = self._entry()[1]
        chunk = copy[self._pos:self._pos + len(b)]
        b[:len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)

    def seek(self, offset, whence=0):
        base = {0: 0, 1: self._pos, 2: len(self._entry()[1])}[whence]
        if base + offset < 0:
            raise OSError(errno.EINVAL, "Invalid argument", self.name)
        self._pos = base + offset
        return self._pos

    def tell(self):
        return self._pos

    def truncate(self, size=None):
        size = self._pos if size is None else size
        index, copy = self._entry()
        if size < len(copy):
            # The log only grows: the file starts again with what it keeps.
            kept = bytes(copy[:size])
            index = _call(0, self._file, self.name)
            if kept:
                _call(1, index, 0, kept, self.name)
            _outputs[self._file] = [index, bytearray(kept)]
        elif size > len(copy):
            self.seek(0, 2)
            self.write(bytes(size - len(copy)))
        return size

    def close(self):
        if not self.closed:
            try:
                _call(2, self._entry()[0], self.name)
            finally:
                super().close()


def _fake_stat(kind, name):
    if kind in ("run", "output"):
        mode, size = 0o40755, 0
    elif kind == "input":
        mode, size = 0o100444, len(_inputs[name])
    elif name in _outputs:
        mode, size = 0o100644, len(_outputs[name][1])
    else:
        return None
    return os.stat_result((mode, 0, 0, 1, 0, 0, size, 0, 0, 0))


def _stat_wrapping(real_stat):
    def stat(path, *, dir_fd=None, follow_symlinks=True):
        where = _where(path) if dir_fd is None else None
        if where is not None:
            result = _fake_stat(*where)
            if result is None:
                raise FileNotFoundError(errno.ENOENT, "No such file or directory",
                                        os.fspath(path))
            return result
        return real_stat(path, dir_fd=dir_fd, follow_symlinks=follow_symlinks)
    return stat


def _listdir(path="."):
    where = _where(path)
    if where is not None and where[0] == "run":
        return sorted(_inputs) + ["output"]
    if where is not None and where[0] == "output":
        return sorted(_outputs)
    return _real_listdir(path)


def _mkdir(path, mode=0o777, *, dir_fd=None):
    where = _where(path) if dir_fd is None else None
    if where is not None and where[0] in ("run", "output"):
        raise FileExistsError(errno.EEXIST, "File exists", os.fspath(path))
    if where is not None:
        raise PermissionError(errno.EACCES, "output/ holds files only, no directories",
                              os.fspath(path))
    return _real_mkdir(path, mode, dir_fd=dir_fd)


def _makedirs(name, mode=0o777, exist_ok=False):
    where = _where(name)
    if where is not None and where[0] in ("run", "output"):
        if exist_ok:
            return
        raise FileExistsError(errno.EEXIST, "File exists", os.fspath(name))
    if where is not None:
        raise PermissionError(errno.EACCES, "output/ holds files only, no directories",
                              os.fspath(name))
    return _real_makedirs(name, mode, exist_ok)


_real_makedirs = os.makedirs
