"""FastGPT's SystemHelper.httpRequest: HTTP performed by the server, which checks every
destination. The child only writes the request on its job channel and waits for the answer."""

import json

_encode_request = json.JSONEncoder(default=str).encode
_decode = json.JSONDecoder().decode


class NetworkDeniedError(PermissionError):
    """A request SystemHelper.httpRequest refused: the destination, the run's budget, or the
    server's policy. Uncaught, the run's error kind is network_denied."""


NetworkDeniedError.__module__ = "builtins"


class SystemHelper:
    """FastGPT's SystemHelper, bound to the host's broker."""

    NetworkDeniedError = NetworkDeniedError

    def __init__(self, broker):
        self._broker = broker

    def httpRequest(self, url, method="GET", headers=None, body=None, timeout=60):
        """Returns {"status", "headers", "data"}; data is parsed JSON when the response is."""
        if isinstance(body, (bytes, bytearray)):
            body = bytes(body).decode("utf-8", "replace")
        request = {"url": str(url), "method": str(method), "headers": dict(headers or {}),
                   "body": body, "timeout": timeout}
        try:
            encoded = _encode_request(request)
        except (TypeError, ValueError) as e:
            raise TypeError(f"httpRequest: the request cannot be sent: {e}") from None
        answer = _decode(self._broker(encoded.encode("utf-8")).decode("utf-8"))
        if "error" in answer:
            error = answer["error"]
            kind = NetworkDeniedError if error.get("denied") else ConnectionError
            raise kind(error.get("message", "the request failed"))
        return answer["ok"]

    # FastGPT's snake-case name for the same call.
    http_request = httpRequest
