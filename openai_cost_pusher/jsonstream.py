"""Decode a page object incrementally, handing over each `data` element when complete.

A costs page of a large organization can hold 100 MB of JSON; decoded at once it would
take several hundred MB. This parser reads the body in chunks, decodes the envelope's
small values normally, and decodes `data` one element at a time, so at most one bucket
is held as text and as objects. Pure: it takes an iterable of byte chunks.

It re-tries decoding an element only once the buffer has doubled since the last try,
so the work stays linear in the size of the element.

Limits, so that no body can exhaust memory or the stack:
- one JSON value (an element of the array, or an envelope value) is at most
  `MAX_VALUE_CHARS` characters (16 Mi, 4 times a day of 20,000 cost results): the
  decoder holds a value whole as text and as objects, so this bounds its memory;
- nesting is at most `MAX_DEPTH` (64) levels, counted from the document's top, here
  and in `loads`. Valid answers nest 5 levels deep. The C decoder would otherwise
  recurse up to the interpreter's limit and raise `RecursionError`.
Both raise `LimitExceeded`, a `StreamError`.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

_WHITESPACE = " \t\r\n"
_DELIMITERS = _WHITESPACE + ",]}:"
MAX_VALUE_CHARS = 16 * 1024 * 1024
MAX_DEPTH = 64


class StreamError(ValueError):
    """The body is not valid JSON, or ends too soon."""


class NotAnObject(StreamError):
    """The body is valid JSON so far, but not an object."""


class LimitExceeded(StreamError):
    """A value is larger, or nests deeper, than the decoder accepts."""


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def _too_deep(value: Any, limit: int) -> bool:
    """Return whether `value` nests more than `limit` levels (a scalar is 0)."""
    level = [value] if isinstance(value, dict | list) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        deeper: list[Any] = []
        for container in level:
            children = container.values() if type(container) is dict else container
            deeper += [c for c in children if type(c) is dict or type(c) is list]
        level = deeper
    return False


def _deep_error(limit: int) -> LimitExceeded:
    return LimitExceeded(f"the JSON nests deeper than {limit} levels")


def loads(content: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Decode a whole JSON document strictly: NaN and Infinity are not JSON.

    Raises `LimitExceeded` (a ValueError) when it nests deeper than `max_depth`.
    """
    try:
        value = json.loads(content, parse_constant=_reject_constant)
    except RecursionError:
        raise _deep_error(max_depth) from None
    if _too_deep(value, max_depth):
        raise _deep_error(max_depth)
    return value


class _Reader:
    """A text buffer over byte chunks with a read position."""

    def __init__(
        self, chunks: Iterable[bytes], max_value_chars: int, max_depth: int
    ) -> None:
        self._chunks = iter(chunks)
        self._max_value_chars = max_value_chars
        self._max_depth = max_depth
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

    def value(self, level: int) -> Any:
        """Decode one complete JSON value at the position, `level` containers deep."""
        self.peek()
        need = 0  # text needed past the position before the next try
        while True:
            available = len(self.buf) - self.pos
            over = available > self._max_value_chars
            if available >= need or self.done or over:
                try:
                    obj, end = self._decoder.raw_decode(self.buf, self.pos)
                except RecursionError:
                    raise self._too_deep() from None
                except ValueError as exc:
                    if self.done:
                        reason = (
                            exc.msg if isinstance(exc, json.JSONDecodeError) else exc
                        )
                        raise StreamError(str(reason)) from None
                    if over:
                        raise self._too_long() from None
                    need = 2 * available
                else:
                    # a number may go on in the next chunk ("1." + "5"): take it
                    # only once a delimiter follows; objects, arrays and strings
                    # end unambiguously
                    opened = self.buf[self.pos] in '{["'
                    closed = end < len(self.buf) and self.buf[end] in _DELIMITERS
                    if opened or closed or self.done:
                        if opened and _too_deep(obj, self._max_depth - level):
                            raise self._too_deep()
                        self.pos = end
                        return obj
                    if over:
                        raise self._too_long()
                    need = available + 1
            self.more()

    def _too_long(self) -> LimitExceeded:
        return LimitExceeded(
            f"a single JSON value is longer than {self._max_value_chars:,} characters"
        )

    def _too_deep(self) -> LimitExceeded:
        return _deep_error(self._max_depth)


def stream_object(
    chunks: Iterable[bytes],
    array_key: str,
    on_envelope: Callable[[str, Any], None],
    *,
    max_value_chars: int = MAX_VALUE_CHARS,
    max_depth: int = MAX_DEPTH,
) -> Iterator[Any]:
    """Yield each element of the top-level object's `array_key` array as it completes.

    Every other key's value goes to `on_envelope(key, value)`, and `array_key` itself
    with an empty list when it is an array. Raises `StreamError`
    when the body is not a JSON object, `array_key` is not an array, or anything is
    malformed or truncated; trailing text after the object is an error too.
    `LimitExceeded` when one value is longer than `max_value_chars` or the document
    nests deeper than `max_depth`.
    """
    reader = _Reader(chunks, max_value_chars, max_depth)
    if reader.peek() in '["-0123456789tfn' and reader.peek():
        raise NotAnObject("expected an object")
    reader.expect("{")
    if reader.peek() == "}":
        reader.pos += 1
    else:
        while True:
            key = reader.value(1)
            if not isinstance(key, str):
                raise StreamError("expected an object key")
            reader.expect(":")
            if key == array_key:
                if reader.peek() != "[":
                    on_envelope(key, reader.value(1))  # the caller reports the type
                else:
                    on_envelope(key, [])  # present; its elements are yielded
                    reader.pos += 1
                    if reader.peek() == "]":
                        reader.pos += 1
                    else:
                        while True:
                            yield reader.value(2)
                            if reader.peek() == ",":
                                reader.pos += 1
                                continue
                            reader.expect("]")
                            break
            else:
                on_envelope(key, reader.value(1))
            if reader.peek() == ",":
                reader.pos += 1
                continue
            reader.expect("}")
            break
    if reader.peek() != "":
        raise StreamError("unexpected text after the object")
