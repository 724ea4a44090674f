"""Python's own HTTP clients through the server's broker.

A child cannot make a socket. `socket.create_connection` — what `http.client` (so
`urllib.request`) and httpx's sync transport call — and urllib3's own `create_connection` (what
`requests` calls) are replaced, as those modules are imported, by one that asks the server for
the connection: the server checks the destination, connects, and hands the connected socket
over. Everything above the socket (TLS and its certificate checks, HTTP, redirects, pools) is
the library's own. A refused connection raises `NetworkDeniedError`, which the libraries wrap
in their own errors; uncaught, the run's error kind is still network_denied (errors.py follows
the chain)."""

import sys

from _sandlot.system_helper import NetworkDeniedError

_connect = None
_encode = None
_decode = None
# The modules whose connection function is replaced, and by which.
_PATCHED = {}


def install(connect, encode, decode):
    """In the zygote: `connect(request_json)` is the host's, returning (answer_json, fd or
    None). The replacements are put in place as their modules are imported."""
    global _connect, _encode, _decode
    _connect, _encode, _decode = connect, encode, decode
    _PATCHED["socket"] = _patch_socket
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
    if fd is None:  # the descriptor could not be received (at the run's descriptor limit)
        raise OSError(f"the connection to {host}:{port} was made but could not be handed over: "
                      "too many files and connections are open in this run")
    sock = socket.socket(fileno=fd)
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
