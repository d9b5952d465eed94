"""One file from a ``multipart/form-data`` body, streamed: each chunk goes to a sink as it arrives, so
a large upload never sits in memory or in a temporary file of the API process (Starlette's form
parser spools every file before the route runs, past any size cap).

:func:`receive_file` feeds ``python-multipart``'s parser from the request stream; the sink for the
named field is opened when that part's headers are read (its filename known) and written in a worker
thread (a remote store blocks on the network). Everything else in the body is read and ignored. A
body that is not multipart (415), that lacks the field or is malformed (422 naming the field) is
refused; the sink is discarded whenever the upload does not finish.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import anyio.to_thread
from fastapi import Request
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from service.api.errors import ProblemError, validation_problem

MULTIPART = "multipart/form-data"


class Sink(Protocol):
    def write(self, data: bytes) -> None: ...

    def discard(self) -> None: ...


S = TypeVar("S", bound=Sink)


class _Parts:
    """The parser's callbacks: collect the events of the ``field`` part (its start with the filename,
    its bytes, its end) for the driver to act on after each chunk; skip every other part."""

    def __init__(self, field: str) -> None:
        self.field = field
        self.events: list[tuple[str, bytes | str | None]] = []
        self.header_name = b""
        self.header_value = b""
        self.disposition = b""
        self.in_field = False
        self.seen = 0  # parts of `field`
        self.finished = False

    def callbacks(self) -> dict[str, Callable[..., None]]:
        return {
            "on_part_begin": self.on_part_begin, "on_part_data": self.on_part_data, "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field, "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end, "on_headers_finished": self.on_headers_finished,
            "on_end": self.on_end,
        }

    def on_part_begin(self) -> None:
        self.disposition, self.in_field = b"", False

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        if self.header_name.strip().lower() == b"content-disposition":
            self.disposition = self.header_value
        self.header_name = self.header_value = b""

    def on_headers_finished(self) -> None:
        _kind, options = parse_options_header(self.disposition)
        name = options.get(b"name")
        if name is None or name.decode("utf-8", "replace") != self.field:
            return
        self.in_field = True
        self.seen += 1
        filename = options.get(b"filename")
        self.events.append(("begin", filename.decode("utf-8", "replace") if filename is not None else None))

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.in_field and end > start:
            self.events.append(("data", data[start:end]))

    def on_part_end(self) -> None:
        if self.in_field:
            self.events.append(("end", None))
        self.in_field = False

    def on_end(self) -> None:
        self.finished = True


def unsupported_media_type() -> ProblemError:
    return ProblemError(
        415, f"Send the file as `{MULTIPART}` with the file in the form field `file`.",
        slug="unsupported-media-type",
        errors=[{"field": "Content-Type", "reason": f"expected {MULTIPART}", "location": "header"}],
    )


async def receive_file(request: Request, field: str, open_sink: Callable[[str | None], Awaitable[S]]) -> S:
    """Stream the ``field`` part of the request's multipart body into the sink ``open_sink(filename)``
    returns (awaited when the part's headers have been read); return the sink once the body ended.
    Raises :class:`ProblemError` (415, 422 naming ``field``) and whatever the sink raises; the sink is
    discarded on every error."""
    media, params = parse_options_header(request.headers.get("content-type", ""))
    if media != MULTIPART.encode():
        raise unsupported_media_type()
    boundary = params.get(b"boundary")
    if not boundary:
        raise validation_problem(field, "the Content-Type has no multipart boundary")
    parts = _Parts(field)
    sink: S | None = None
    try:
        try:
            parser = MultipartParser(boundary, parts.callbacks())  # type: ignore[arg-type]
        except (FormParserError, ValueError) as exc:
            raise validation_problem(field, f"the multipart boundary is not usable ({exc})") from exc
        async for chunk in request.stream():
            try:
                parser.write(chunk)
            except FormParserError as exc:
                raise validation_problem(field, f"the multipart body is malformed ({exc})") from exc
            sink = await _act(parts, field, sink, open_sink)
        parser.finalize()
        if sink is None:
            raise validation_problem(field, f"missing: send the file as the multipart form field `{field}`")
        if not parts.finished:
            raise validation_problem(field, "the multipart body ended before its closing boundary")
    except BaseException:
        if sink is not None:
            await anyio.to_thread.run_sync(sink.discard)
        raise
    return sink


async def _act(parts: _Parts, field: str, sink: S | None,
                        open_sink: Callable[[str | None], Awaitable[S]]) -> S | None:
    """Apply the events of one chunk: open the sink, write the bytes (once per chunk, in a thread)."""
    events, parts.events = parts.events, []
    pending: list[bytes] = []
    for kind, value in events:
        if kind == "begin":
            if parts.seen > 1:
                raise validation_problem(field, f"more than one `{field}` part; send one file per upload")
            sink = await open_sink(value if isinstance(value, str) else None)
        elif kind == "data" and isinstance(value, bytes):
            pending.append(value)
    if pending and sink is not None:
        await anyio.to_thread.run_sync(sink.write, b"".join(pending))
    return sink
