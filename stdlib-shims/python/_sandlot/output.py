"""stdout and stderr of one run, held in memory up to the run's byte limit."""


class Output:
    """Both streams of a run; crossing `limit` (bytes, both together) calls `on_overflow`."""

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


class Stream:
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
