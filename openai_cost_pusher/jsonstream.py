"""Decode a page object incrementally, handing over each `data` element when complete.

A costs page of a large organization can hold 100 MB of JSON; decoded at once it would
take several hundred MB. This parser reads the body in chunks, decodes the envelope's
small values normally, and decodes `data` one element at a time, so at most one bucket
is held as text and as objects. Pure: it takes an iterable of byte chunks.

It re-tries decoding an element only once the buffer has doubled since the last try,
so the work stays linear in the size of the element.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

_WHITESPACE = " \t\r\n"
_DELIMITERS = _WHITESPACE + ",]}:"


class StreamError(ValueError):
    """The body is not valid JSON, or ends too soon."""


class NotAnObject(StreamError):
    """The body is valid JSON so far, but not an object."""


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def loads(content: bytes | str) -> Any:
    """Decode a whole JSON document strictly: NaN and Infinity are not JSON."""
    return json.loads(content, parse_constant=_reject_constant)


class _Reader:
    """A text buffer over byte chunks with a read position."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._decoder = json.JSONDecoder(parse_constant=_reject_constant)
        self.buf = ""
        self.pos = 0
        self.done = False

    def more(self) -> bool:
        """Append the next chunk; return False when the body is exhausted."""
        if self.done:
            return False
        for chunk in self._chunks:
            text = self._decode(chunk)
            if text:
                self.buf = self.buf[self.pos :] + text
                self.pos = 0
                return True
        tail = self._decode(b"", final=True)
        self.buf = self.buf[self.pos :] + tail
        self.pos = 0
        self.done = True
        return bool(tail)

    def _decode(self, chunk: bytes, *, final: bool = False) -> str:
        try:
            return self._utf8.decode(chunk, final)
        except UnicodeDecodeError as exc:
            raise StreamError(f"the body is not UTF-8 ({exc.reason})") from None

    def peek(self) -> str:
        """Skip whitespace; return the next character, or "" at the end."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in _WHITESPACE:
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.more():
                return ""

    def expect(self, char: str) -> None:
        """Consume `char` (after whitespace) or fail."""
        found = self.peek()
        if found != char:
            shown = repr(found) if found else "the end of the body"
            raise StreamError(f"expected {char!r}, found {shown}")
        self.pos += 1

    def value(self) -> Any:
        """Decode one complete JSON value at the position."""
        self.peek()
        need = 0  # text needed past the position before the next try
        while True:
            available = len(self.buf) - self.pos
            if available >= need or self.done:
                try:
                    obj, end = self._decoder.raw_decode(self.buf, self.pos)
                except ValueError as exc:
                    if self.done:
                        reason = (
                            exc.msg if isinstance(exc, json.JSONDecodeError) else exc
                        )
                        raise StreamError(str(reason)) from None
                    need = 2 * available
                else:
                    # a number may go on in the next chunk ("1." + "5"): take it
                    # only once a delimiter follows; objects, arrays and strings
                    # end unambiguously
                    opened = self.buf[self.pos] in '{["'
                    closed = end < len(self.buf) and self.buf[end] in _DELIMITERS
                    if opened or closed or self.done:
                        self.pos = end
                        return obj
                    need = available + 1
            self.more()


def stream_object(
    chunks: Iterable[bytes], array_key: str, on_envelope: Callable[[str, Any], None]
) -> Iterator[Any]:
    """Yield each element of the top-level object's `array_key` array as it completes.

    Every other key's value goes to `on_envelope(key, value)`, and `array_key` itself
    with an empty list when it is an array. Raises `StreamError`
    when the body is not a JSON object, `array_key` is not an array, or anything is
    malformed or truncated; trailing text after the object is an error too.
    """
    reader = _Reader(chunks)
    if reader.peek() in '["-0123456789tfn' and reader.peek():
        raise NotAnObject("expected an object")
    reader.expect("{")
    if reader.peek() == "}":
        reader.pos += 1
    else:
        while True:
            key = reader.value()
            if not isinstance(key, str):
                raise StreamError("expected an object key")
            reader.expect(":")
            if key == array_key:
                if reader.peek() != "[":
                    on_envelope(key, reader.value())  # the caller reports the type
                else:
                    on_envelope(key, [])  # present; its elements are yielded
                    reader.pos += 1
                    if reader.peek() == "]":
                        reader.pos += 1
                    else:
                        while True:
                            yield reader.value()
                            if reader.peek() == ",":
                                reader.pos += 1
                                continue
                            reader.expect("]")
                            break
            else:
                on_envelope(key, reader.value())
            if reader.peek() == ",":
                reader.pos += 1
                continue
            reader.expect("}")
            break
    if reader.peek() != "":
        raise StreamError("unexpected text after the object")
