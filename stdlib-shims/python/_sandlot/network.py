"""Python's own HTTP clients through the server's broker.

A child cannot make a socket. `socket.create_connection` — what `http.client` (so
`urllib.request`) and httpx's sync transport call — and urllib3's own `create_connection` (what
`requests` calls) are replaced, as those modules are imported, by one that asks the server for
the connection: the server checks the destination, connects, and hands the connected socket
over. Everything above the socket (TLS and its certificate checks, HTTP, redirects, pools) is
the library's own. A refused connection raises `NetworkDeniedError`, which the libraries wrap
in their own errors; uncaught, the run's error kind is still network_denied (errors.py follows
the chain).

A read of such a socket that would wait (nothing buffered, nothing to read yet) first waits
through the server, which gives the run's core to another run until the socket has something
to read: a run waiting on a slow API holds no core. Plain sockets and TLS ones alike."""

import select
import sys
from time import monotonic as _monotonic

from _sandlot.system_helper import NetworkDeniedError

_connect = None
_encode = None
_decode = None
_wait_readable = None
# The connections handed over so far, and each open socket's number among them, by descriptor.
_handed = 0
_connection_of = {}
# The modules whose connection function is replaced, and by which.
_PATCHED = {}


def install(connect, encode, decode, wait_readable):
    """In the zygote: `connect(request_json)` is the host's, returning (answer_json, fd or
    None); `wait_readable(connection, timeout)` the host's wait on a connection. The
    replacements are put in place as their modules are imported."""
    global _connect, _encode, _decode, _wait_readable
    _connect, _encode, _decode, _wait_readable = connect, encode, decode, wait_readable
    _PATCHED["socket"] = _patch_socket
    _PATCHED["ssl"] = _patch_ssl
    _PATCHED["urllib3.util.connection"] = _patch_urllib3
    for name, patch in _PATCHED.items():
        module = sys.modules.get(name)
        if module is not None:
            patch(module)
    sys.meta_path.insert(0, _PatchOnImport())


def patch_on_import(name, patch):
    """Has `patch(module)` run on module `name` as soon as it is imported (at once, if it is
    already): this file's hook, shared with the other patches of third-party modules."""
    _PATCHED[name] = patch
    module = sys.modules.get(name)
    if module is not None:
        patch(module)


def _brokered_socket(host, port, timeout):
    """A socket connected to host:port by the server, or the exception the libraries expect."""
    import socket
    global _handed

    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    wait = timeout if isinstance(timeout, (int, float)) and timeout > 0 else None
    request = _encode({"host": str(host), "port": int(port), "timeout": wait})
    answer, fd = _connect(request.encode("utf-8"))
    answer = _decode(answer.decode("utf-8"))
    error = answer.get("error")
    if error is not None:
        message = error.get("message", "the connection failed")
        if error.get("denied"):
            raise NetworkDeniedError(message)
        if "timed out" in message:
            raise TimeoutError(message)
        raise ConnectionRefusedError(message) if "refused" in message else OSError(message)
    connection, _handed = _handed, _handed + 1
    if fd is None:  # the descriptor could not be received (at the run's descriptor limit)
        raise OSError(f"the connection to {host}:{port} was made but could not be handed over: "
                      "too many files and connections are open in this run")
    sock = socket.socket(fileno=fd)
    _connection_of[fd] = connection
    if timeout is not socket._GLOBAL_DEFAULT_TIMEOUT:
        sock.settimeout(timeout)
    elif socket.getdefaulttimeout() is not None:
        sock.settimeout(socket.getdefaulttimeout())
    return sock


def _patch_socket(module):
    default = module._GLOBAL_DEFAULT_TIMEOUT

    def create_connection(address, timeout=default, source_address=None, *,
                          all_errors=False):
        """socket.create_connection through the sandbox's broker (source_address is
        ignored: the server chooses it)."""
        host, port = address[0], address[1]
        return _brokered_socket(host, port, timeout)

    module.create_connection = create_connection
    plain = module.socket
    for name in ("recv", "recv_into"):
        plain_read = getattr(plain, name)
        setattr(plain, name, _waiting_first(plain_read))


def _patch_ssl(module):
    # recv and recv_into both read through read(); before the handshake they are the plain
    # socket's, waiting already. A readable TLS socket may hold no application data (TLS 1.3
    # sends session tickets after the handshake), so the read is tried without blocking first,
    # and waits through the server while it would block.
    read = module.SSLSocket.read
    would_block = module.SSLWantReadError

    def waiting_read(sock, *args, **kwargs):
        connection = _connection_of.get(sock.fileno())
        timeout = sock.gettimeout()
        if connection is None or timeout == 0.0 or sock._sslobj is None:
            return read(sock, *args, **kwargs)
        deadline = None if timeout is None else _monotonic() + timeout
        while True:
            sock.settimeout(0.0)
            try:
                return read(sock, *args, **kwargs)
            except would_block:
                pass
            finally:
                sock.settimeout(timeout)
            left = None if deadline is None else deadline - _monotonic()
            if (left is not None and left <= 0) or not _wait_readable(connection, left):
                raise TimeoutError("The read operation timed out")

    waiting_read.__name__ = read.__name__
    waiting_read.__qualname__ = read.__qualname__
    waiting_read.__doc__ = read.__doc__
    module.SSLSocket.read = waiting_read


def _waiting_first(read):
    """A plain socket's `read`, after a wait through the server when it would block on a
    brokered socket (a readable plain socket has data or its end)."""
    def waiting_read(sock, *args, **kwargs):
        connection = _connection_of.get(sock.fileno())
        if connection is not None:
            _wait_until_readable(sock, connection)
        return read(sock, *args, **kwargs)

    waiting_read.__name__ = read.__name__
    waiting_read.__qualname__ = getattr(read, "__qualname__", read.__name__)
    waiting_read.__doc__ = read.__doc__
    return waiting_read


def _wait_until_readable(sock, connection):
    timeout = sock.gettimeout()
    if timeout == 0.0:
        return  # non-blocking: the caller handles "would block"
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    if poller.poll(0):
        return
    if not _wait_readable(connection, timeout):
        raise TimeoutError("timed out")


def _patch_urllib3(module):
    import socket

    def create_connection(address, timeout=socket._GLOBAL_DEFAULT_TIMEOUT,
                          source_address=None, socket_options=None):
        """urllib3's create_connection through the sandbox's broker."""
        host, port = address
        if host.startswith("["):
            host = host.strip("[]")
        sock = _brokered_socket(host, port, timeout)
        for option in socket_options or ():
            try:
                sock.setsockopt(*option)
            except OSError:
                pass  # an option the jail does not allow changes nothing that matters
        return sock

    module.create_connection = create_connection


class _PatchOnImport:
    """A finder that finds nothing itself: for the patched modules it asks the other finders,
    and wraps the loader so the module is patched as soon as it has run."""

    def find_spec(self, name, path=None, target=None):
        patch = _PATCHED.get(name)
        if patch is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _PatchingLoader(spec.loader, patch)
                return spec
        return None


class _PatchingLoader:
    def __init__(self, loader, patch):
        self._loader = loader
        self._patch = patch

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        self._patch(module)

    def __getattr__(self, name):
        return getattr(self._loader, name)
