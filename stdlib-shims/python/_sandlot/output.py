"""sys.stdout and sys.stderr of a run: each write goes straight to the run's output file (the
host's `write`), which the server reads however the run ends."""


class Stream:
    """The sys.stdout / sys.stderr a run sees. `write(index, text)` is the host's: it returns
    True once the run's output limit is crossed, and `on_overflow` then ends the run."""

    encoding = "utf-8"
    errors = "strict"

    def __init__(self, write, index, name, on_overflow):
        self._write = write
        self._index = index
        self._on_overflow = on_overflow
        self.name = name

    def write(self, text):
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if self._write(self._index, text):
            self._on_overflow()
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
