"""The client of the emulator's control routes (`/_builder/...`, JSON over HTTP)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from builder.errors import InputError, OperationFailed


def call(endpoint: str, route: str, body: dict[str, Any] | None = None, *,
         timeout: float = 30) -> Any:
    """GET a route, or POST `body` to it; the decoded JSON answer.

    A 4xx answer is the caller's mistake (InputError), anything else OperationFailed.
    """
    request = urllib.request.Request(  # noqa: S310 - the endpoint is our own http://127.0.0.1
        f"{endpoint.rstrip('/')}/_builder/{route}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - the endpoint is our own http://127.0.0.1
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        message = _error_message(exc)
        error = InputError if 400 <= exc.code < 500 else OperationFailed
        raise error(f"local emulator: {message}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise OperationFailed(f"the local emulator at {endpoint} does not answer: {exc}") from exc


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read()).get("error", exc.reason))
    except (ValueError, AttributeError, OSError):
        return str(exc.reason)
