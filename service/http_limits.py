"""The HTTP server's own bounds on a request's head (request line + headers), before any routing or auth.

uvicorn's httptools protocol keeps reading a header for as long as the client sends it (a 200 MB header on
``/healthz`` was answered 200; four at once took the server from 888 MB to 1.6 GB). This protocol, which
``advisor serve`` gives uvicorn, counts the head as it streams in and answers **431 Request Header Fields
Too Large** (problem+json, then closes the connection) once it passes ``ADVISOR_MAX_HEADER_BYTES`` or
holds more than ``ADVISOR_MAX_HEADER_COUNT`` fields. The bytes of a head that is still incomplete are
counted chunk by chunk, so no more than the limit plus one read (256 KiB) is ever held.
"""

from __future__ import annotations

import json
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from service.core.config import get_settings


class _HeadTooLarge(Exception):
    pass


def refusal_response(status: int, detail: str) -> bytes:
    body = json.dumps({"type": "about:blank", "title": "Request Header Fields Too Large", "status": status,
                       "detail": detail}).encode()
    return b"".join([STATUS_LINE[status], b"content-type: application/problem+json\r\n",
                     b"content-length: ", str(len(body)).encode(), b"\r\n", b"connection: close\r\n\r\n", body])


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a cap on the head's bytes and field count (0: the settings')."""

    max_head_bytes: int = 0
    max_header_count: int = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.max_head_bytes or not self.max_header_count:
            settings = get_settings()
            self.max_head_bytes = self.max_head_bytes or settings.max_header_bytes
            self.max_header_count = self.max_header_count or settings.max_header_count
        self._in_head, self._head_bytes, self._header_count, self._refusal = True, 0, 0, ""

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_bytes, self._header_count = True, 0, 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.max_header_count:
            self._refuse(f"more than {self.max_header_count} header fields")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
        if size > self.max_head_bytes:
            self._refuse(f"the request line and headers exceed {self.max_head_bytes} bytes")
        super().on_headers_complete()

    def _refuse(self, detail: str) -> None:
        self._refusal = detail
        raise _HeadTooLarge(detail)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            if self._refusal:
                self._send_431()
            else:
                msg = "Invalid HTTP request received."
                self.logger.warning(msg)
                self.send_400_response(msg)
            return
        if self._in_head and self.transport is not None and not self.transport.is_closing():
            self._head_bytes += len(data)  # still inside a head: every byte of this chunk was head
            if self._head_bytes > self.max_head_bytes:
                self._refusal = f"the request line and headers exceed {self.max_head_bytes} bytes"
                self._send_431()

    def _send_431(self) -> None:
        self.logger.warning("request head refused (431): %s", self._refusal)
        self.transport.write(refusal_response(431, self._refusal + "; the server's ADVISOR_MAX_HEADER_BYTES and "
                                              "ADVISOR_MAX_HEADER_COUNT set the limits"))
        self.transport.close()
