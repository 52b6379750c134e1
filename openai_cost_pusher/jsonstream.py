"""Decode a page object incrementally, handing over each `data` element when complete.

A costs page of a large organization can hold 100 MB of JSON; decoded at once it would
take several hundred MB. This parser reads the body in chunks of bytes and decodes each
value of the top-level object (`data`'s elements one at a time) exactly once, with the
standard library's C decoder, as soon as its last byte has arrived. So at most one
bucket is held as text and as objects (`stream_object`). Pure: it takes an iterable of
byte chunks.

One bucket can be large too: a day of 3,000 projects x 20 line items is 60,000
results, 16 to 17 Mi characters; decoded whole it peaked at 67 MiB of allocations
(bytes, text and 60,000 dicts). `stream_parts` hands each bucket on in parts instead:
its other keys decoded whole, and its `results` array in batches of consecutive
elements of about `BATCH_BYTES` (1 MiB), each batch decoded with one call of the C
decoder (wrapped as an array), as soon as its last element has arrived. So one batch
is held as text and as objects, and the caller builds compact records from it before
the next one is decoded: that day now peaks at 13 MiB, 10 of them its records, in as
many CPU instructions as before (cachegrind: within 1 %).

Where a value ends is found without decoding it, and without a Python step per byte
(a pass of Python's `re` over such text is slower than `json` decoding it): an object
or array is scanned in windows of up to 64 KiB with byte-level C operations. Each
window is reduced to its quotes and brackets (`bytes.translate`), after neutralizing
escaped backslashes and quotes. If each quote pairs with the next one (counted with
`bytes.count`), no bracket is inside a string, as in the usual window; else adjacent
quote pairs are dropped (this keeps the parity of the quotes before every bracket) and
the brackets inside strings cut out with one `split`. Repeatedly removing `()` pairs
from the brackets tells, per window, whether the value ends in it and how deep it may
nest; only in the window where it ends (or near the depth limit) does a Python loop
look at single marks. A string ends at the first quote after an even run of
backslashes, a number or literal at the next delimiter. Finding the ends, joining each
value's chunks and decoding its UTF-8 take about a fifth of the time the C decoder
then needs. The previous decoder re-tried `raw_decode` on partial text, which cost
about as much again as the decoding itself: a 31-day page of 1,000 projects (136 MB)
took 8.2 s to decode, now 3.3 to 4.3 s, as long as one `json.loads` of the whole page.
A nested array is scanned the same way, as one value; in each window that comes back
to the array's own level, the end of its last element there (an object or array) is
found from the window's reduced brackets with a few `bytes.count`, and its position by
halving: a few steps a window, not a step per result.

Limits, so that no body can exhaust memory or the stack:
- one JSON value (an element of the array, or an envelope value; with `stream_parts`
  a key or value of an element, or one element of its nested array, not the element)
  is at most `MAX_VALUE_CHARS` characters (1 Mi; a cost result is about 300): the
  decoder holds a value whole as
  bytes, text and objects, so this bounds its memory; the scan stops as soon as a
  value passes it, however the body is cut. An element of a nested array counts with
  the comma and whitespace before it, and elements that are neither objects nor
  arrays count together with the elements after them, up to the end of the next
  object or array or of the array (results are objects: such results are malformed
  anyway). A nested array itself may be longer: its batches are cut at its elements'
  ends;
- nesting is at most `MAX_DEPTH` (64) levels, counted from the document's top, here
  and in `loads`. Valid answers nest 5 levels deep. The scan counts the levels before
  anything is decoded, so the C decoder never recurses deeper.
Both raise `LimitExceeded`, a `StreamError`. The bytes of each value must be UTF-8;
between values only JSON whitespace and delimiters are accepted.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple, Protocol

MAX_VALUE_CHARS = 1024 * 1024
MAX_DEPTH = 64
FIRST_WINDOW = 1024
"""The first window scanned of an object or array; each next one is twice as large."""
MAX_WINDOW = 64 * 1024
"""The largest window: it bounds the work done past a value's end."""
BATCH_BYTES = 1024 * 1024
"""The bytes of a nested array's elements decoded at once (`stream_parts`)."""

_NOT_WHITESPACE = re.compile(rb"[^ \t\r\n]")
_SCALAR_END = re.compile(rb"[ \t\r\n,\]}:]")
_BYTES = bytes(range(256))
_ALL_BUT_QUOTES_AND_BRACKETS = bytes(c for c in _BYTES if c not in b'"[]{}')
_ALL_BUT_BRACKETS = bytes(c for c in _BYTES if c not in b"[]{}")
_ALL_BUT_CONTINUATION = bytes(c for c in _BYTES if not 0x80 <= c < 0xC0)
_TO_PARENS = bytes.maketrans(b"[]{}", b"()()")
_BRACKETS = frozenset(b"[]{}")
_OPENING = frozenset(b"[{")
_QUOTE = ord('"')
_CLOSING_ARRAY = ord("]")
_BACKSLASH = ord("\\")
_NOT_AN_OBJECT = b'["-0123456789tfn'
"""First bytes of JSON values that are not objects."""


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


def _chars(data: bytes) -> int:
    """Return how many characters the UTF-8 `data` holds."""
    if data.isascii():
        return len(data)
    return len(data) - len(data.translate(None, _ALL_BUT_CONTINUATION))


def _odd_backslashes(data: bytes) -> bool:
    """Return whether `data` ends with an odd run of backslashes (an open escape)."""
    return (
        bool(data)
        and data[-1] == _BACKSLASH
        and (len(data) - len(data.rstrip(b"\\"))) % 2 == 1
    )


class _Step(Protocol):
    """Scan `buf[i:limit]` for the end of the value being read.

    Returns `(resume, end)`: `end` is the index just past the value, or None; then
    `resume` is where the next scan starts. A scan stops short of `limit` only before
    a backslash whose escaped byte has not arrived; it may pass `limit` to take that
    byte along. `final` says the body ends with `buf`.
    """

    def __call__(
        self, buf: bytes, i: int, limit: int, final: bool
    ) -> tuple[int, int | None]: ...


def _string_end(buf: bytes, i: int, limit: int, final: bool) -> tuple[int, int | None]:
    """Find the quote that closes the string whose opening quote is before `i`."""
    while True:
        quote = buf.find(b'"', i, limit)
        if quote < 0:
            break
        if not _odd_backslashes(buf[i:quote]):  # a run never spans a quote
            return quote + 1, quote + 1
        i = quote + 1
    if not final and _odd_backslashes(buf[i:limit]):
        return (limit + 1 if limit < len(buf) else limit - 1), None
    return limit, None


def _scalar_end(buf: bytes, i: int, limit: int, final: bool) -> tuple[int, int | None]:
    """Find the delimiter after a number or literal (`1.` may go on with `5`)."""
    found = _SCALAR_END.search(buf, i, limit)
    if found is not None:
        return found.start(), found.start()
    if final and limit == len(buf):
        return limit, limit
    return limit, None


class _Brackets:
    """Find where an object or array ends: its scan state between windows."""

    __slots__ = ("depth", "headroom", "in_string", "max_depth", "window")

    def __init__(self, level: int, max_depth: int) -> None:
        self.depth = 1  # the opening bracket, just read
        self.in_string = False
        self.max_depth = max_depth
        self.headroom = max_depth - level  # the levels the value may take
        self.window = FIRST_WINDOW
        if self.headroom < 1:
            raise _deep_error(max_depth)

    def __call__(
        self, buf: bytes, i: int, limit: int, final: bool
    ) -> tuple[int, int | None]:
        resume, end, _ = self.scan(buf, i, limit, final)
        return resume, end

    def scan(
        self, buf: bytes, i: int, limit: int, final: bool
    ) -> tuple[int, int | None, int | None]:
        """Scan `buf[i:limit]` window by window; return `(resume, end, cut)`: where
        to go on, the index just past the value's end (or None), and the index just
        past the last element ending in `buf[i:resume]` that is an object or an
        array, where `_cuts` finds one (or None)."""
        cut = None
        while i < limit:
            j = min(limit, i + self.window)
            self.window = min(2 * self.window, MAX_WINDOW)
            if buf[j - 1] == _BACKSLASH and _odd_backslashes(buf[i:j]):
                # keep an escape with the byte it escapes
                if j < len(buf):
                    j += 1
                elif not final:
                    j -= 1
                    if j == i:
                        return i, None, cut
            end, at = self._cuts(buf[i:j])
            if at is not None:
                cut = i + at
            if end is not None:
                return j, i + end, cut
            i = j
        return i, None, cut

    def _cuts(self, seg: bytes) -> tuple[int | None, int | None]:
        """Scan one window: the value's end in it (see `_window`), and no cut."""
        return self._window(seg), None

    def _window(self, seg: bytes) -> int | None:
        """Scan one window; return the index just past the value's end in it, or
        None and carry the depth and string state over to the next window."""
        marks, brackets, in_string, plain = _reduce(seg, self.in_string)
        _, rest, passes, opens, closes = _nest(brackets, self.headroom)
        # the window nests at most `opens + passes` levels above its start
        if (
            b"()" in rest
            or closes >= self.depth
            or self.depth + opens + passes > self.headroom
        ):
            return self._exact(seg, brackets if plain else marks)
        self.depth += opens - closes
        self.in_string = in_string
        return None

    def _exact(self, seg: bytes, marks: bytes) -> int | None:
        """Follow the window's quotes and brackets (`marks`) one by one: the value's
        end, or the level past the limit."""
        return self._exact_cuts(seg, marks)[0]

    def _exact_cuts(self, seg: bytes, marks: bytes) -> tuple[int | None, int | None]:
        """Follow the window's quotes and brackets (`marks`) one by one: the value's
        end (or the level past the limit), and the end of the last bracket that
        came back to the value's own level (between elements of an array)."""
        depth = self.depth
        in_string = False
        nth = -1
        last = -1  # the last bracket that came back between elements
        end = None
        for mark in marks:
            if mark == _QUOTE:
                in_string = not in_string
                continue
            nth += 1
            if in_string:
                continue
            if mark in _OPENING:
                depth += 1
                if depth > self.headroom:
                    raise _deep_error(self.max_depth)
            else:
                depth -= 1
                if depth == 1:
                    last = nth
                elif not depth:
                    end = _nth_bracket(seg, nth) + 1
                    break
        self.depth = depth
        self.in_string = in_string
        return end, (None if last < 0 else _nth_bracket(seg, last) + 1)


def _reduce(seg: bytes, in_string: bool) -> tuple[bytes, bytes, bool, bool]:
    """Reduce a window to its marks (quotes and brackets, led by a quote if it starts
    inside a string) and its brackets outside strings; return both, whether the
    window ends inside a string, and whether every quote paired with the next one."""
    if b"\\" in seg:  # `\\` and `\"` hold no quote: same length, positions kept
        seg = seg.replace(b"\\\\", b"__").replace(b'\\"', b"__")
    marks = seg.translate(None, _ALL_BUT_QUOTES_AND_BRACKETS)
    if in_string:
        marks = b'"' + marks
    quotes = marks.count(b'"')
    if quotes == 2 * marks.count(b'""'):
        # each quote pairs with the next one: no bracket is inside a string, and the
        # window ends outside one (the usual window)
        return marks, marks.translate(None, b'"') if quotes else marks, False, True
    # drop adjacent quote pairs (each bracket keeps its quote parity)
    parts = marks.replace(b'""', b"").split(b'"')
    return marks, b"".join(parts[0::2]), len(parts) % 2 == 0, False


def _nest(brackets: bytes, headroom: int) -> tuple[bytes, bytes, int, int, int]:
    """Return the brackets as parentheses, what is left of them once matched pairs
    are removed (one level of nesting per pass, at most `headroom + 1` passes), the
    passes, and how many opening and closing brackets are left unmatched."""
    parens = brackets.translate(_TO_PARENS)
    rest, passes = parens, 0
    while b"()" in rest and passes <= headroom:
        rest = rest.replace(b"()", b"")
        passes += 1
    closes = len(rest) - len(rest.lstrip(b")"))
    return parens, rest, passes, len(rest) - closes, closes


def _nth_bracket(seg: bytes, k: int) -> int:
    """Return the index of the `k`-th (from 0) bracket of `seg`, by halving."""
    lo, hi = 0, len(seg)
    while hi - lo > 256:
        mid = (lo + hi) // 2
        count = len(seg[lo:mid].translate(None, _ALL_BUT_BRACKETS))
        if k < count:
            hi = mid
        else:
            k -= count
            lo = mid
    for index in range(lo, hi):
        if seg[index] in _BRACKETS:
            if not k:
                return index
            k -= 1
    raise AssertionError("unreachable: the window holds that bracket")


def _nth_bracket_from_end(seg: bytes, m: int) -> int:
    """Return the index of the `m`-th (from 1) bracket of `seg` counted from its end,
    looking at a tail twice as long each time: the bracket is usually near the end."""
    hi, size = len(seg), 256
    while True:
        lo = max(0, hi - size)
        count = len(seg[lo:hi].translate(None, _ALL_BUT_BRACKETS))
        if count >= m:
            return lo + _nth_bracket(seg[lo:hi], count - m)
        if not lo:
            raise AssertionError("unreachable: the window holds that bracket")
        m -= count
        hi, size = lo, 2 * size


class _Elements(_Brackets):
    """Find where an array ends, and where its elements that are objects or arrays
    end, in bulk: the array's scan state between windows.

    `depth` 1 is the array's own level, between its elements. Each window is reduced
    as by `_Brackets`; when the window comes back to that level, the end of the last
    element there is the last closing bracket after which the rest of the window
    opens exactly its unmatched brackets (counted with `bytes.count`, from the end:
    usually two or three steps, the inner objects of that last element).
    """

    __slots__ = ()

    def _cuts(self, seg: bytes) -> tuple[int | None, int | None]:
        """Scan one window; return the index just past the array's end in it or None,
        and just past the last element that ends in it or None."""
        marks, brackets, in_string, plain = _reduce(seg, self.in_string)
        # no bracket inside a string: the window's brackets are all the value's
        mapped = len(brackets) == len(marks) - marks.count(b'"')
        parens, rest, passes, opens, closes = _nest(brackets, self.headroom)
        returns = self.depth - closes == 1  # the window comes back between elements
        if (
            b"()" in rest
            or closes >= self.depth
            or self.depth + opens + passes > self.headroom
            or (returns and not mapped)
        ):
            return self._exact_cuts(seg, brackets if plain else marks)
        cut = None
        if returns:
            k = parens.rfind(b")")
            after = parens.count(b"(", k + 1)  # opens minus closes after `k`
            while k >= 0 and after != opens:
                before = parens.rfind(b")", 0, k)
                after += parens.count(b"(", before + 1, k) - 1
                k = before
            if k >= 0:
                cut = _nth_bracket_from_end(seg, len(parens) - k) + 1
        self.depth += opens - closes
        self.in_string = in_string
        return None, cut


def _split(pieces: list[bytes], at: int) -> tuple[list[bytes], list[bytes]]:
    """Split the bytes `pieces` hold at offset `at`: the pieces before, and after."""
    head: list[bytes] = []
    for n, piece in enumerate(pieces):
        if at <= len(piece):
            head.append(piece[:at])
            return head, [piece[at:], *pieces[n + 1 :]]
        head.append(piece)
        at -= len(piece)
    raise AssertionError("unreachable: the pieces hold that offset")


class _Reader:
    """A byte buffer over the body's chunks with a read position."""

    def __init__(
        self, chunks: Iterable[bytes], max_value_chars: int, max_depth: int
    ) -> None:
        self._chunks = iter(chunks)
        self._max_chars = max_value_chars
        self.max_depth = max_depth
        self._decoder = json.JSONDecoder(parse_constant=_reject_constant)
        self.digests = False  # whether `batches` digests each batch's bytes
        self.buf = b""
        self.pos = 0
        self.done = False

    def more(self, keep: int) -> bool:
        """Keep `buf[keep:]`, append the next chunk and read from 0; return False
        (and set `done`) when the body is exhausted."""
        rest = self.buf[keep:]
        self.pos = 0
        if not self.done:
            for chunk in self._chunks:
                if chunk:
                    self.buf = rest + chunk if rest else chunk
                    return True
            self.done = True
        self.buf = rest
        return False

    def peek(self) -> bytes:
        """Skip whitespace; return the next byte, or b"" at the end of the body."""
        while True:
            found = _NOT_WHITESPACE.search(self.buf, self.pos)
            if found is not None:
                self.pos = found.start()
                return self.buf[self.pos : self.pos + 1]
            if not self.more(len(self.buf)):
                return b""

    def expect(self, char: bytes) -> None:
        """Consume `char` (after whitespace) or fail."""
        found = self.peek()
        if found != char:
            shown = repr(found.decode("latin-1")) if found else "the end of the body"
            raise StreamError(f"expected {char.decode()!r}, found {shown}")
        self.pos += 1

    def value(self, level: int) -> Any:
        """Decode the JSON value at the position, `level` containers deep, once its
        last byte has arrived."""
        first = self.peek()
        step: _Step
        if not first:
            raise StreamError("expected a value, found the end of the body")
        if first in b"{[":
            step = _Brackets(level, self.max_depth)
        elif first == b'"':
            step = _string_end
        else:
            step = _scalar_end
        start = self.pos
        resume = start if step is _scalar_end else start + 1
        held: list[bytes] = []  # the value's bytes before `start`
        chars = 0  # characters in `held`
        while True:
            size = len(self.buf)
            limit = min(size, start + self._max_chars - chars + 1)
            final = self.done and limit == size
            resume, end = step(self.buf, resume, limit, final)
            if end is not None:
                break
            if final:
                raise StreamError("the body ends inside a value")
            piece = self.buf[start:resume]
            chars += _chars(piece)
            if chars > self._max_chars:
                raise self._too_long()
            held.append(piece)
            if limit < size:  # stopped by the length limit: the buffer goes on
                start = resume
            else:
                self.more(resume)
                start = resume = 0
        if held:
            held.append(self.buf[start:end])
            data = b"".join(held)
            held.clear()
        else:
            data = self.buf[start:end]
        self.pos = end
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StreamError(f"the body is not UTF-8 ({exc.reason})") from None
        del data  # not held while the objects are built
        if len(text) > self._max_chars:
            raise self._too_long()
        return self._decode(text)

    def batches(
        self, level: int, batch_bytes: int
    ) -> Iterator[tuple[list[Any], bytes]]:
        """Decode the array at the position (`level` containers deep) in batches of
        its elements, each with the digest of its bytes where `digests` is set (see
        `stream_parts`); nothing for an empty array.

        Offsets below count bytes from the batch's first byte, held ones included:
        `cut` is just past the batch's last whole element (0: none yet), and the
        current element's characters are counted up to `counted`.
        """
        self.pos += 1  # the opening bracket, peeked
        if self.peek() == b"]":
            self.pos += 1
            return
        scan = _Elements(level, self.max_depth)
        start = resume = self.pos  # the batch's first byte not in `held`
        held: list[bytes] = []  # the batch's bytes before `buf[start]`
        held_bytes = 0
        prefix = b"["
        cut = counted = chars = 0
        while True:
            size = len(self.buf)
            at = held_bytes - start  # the offset of `buf[0]`
            room = self._max_chars - chars  # the characters the element may still take
            if at + resume - counted >= room:  # they may be used up: count them
                chars += _chars(self.buf[counted - at : resume])
                counted = at + resume
                if chars > self._max_chars:
                    raise self._too_long()
                room = self._max_chars - chars
            stop = counted - at + room  # a byte is at most a character
            if stop == resume < size:  # used up: only the array's end may follow
                if (
                    self.buf[resume] != _CLOSING_ARRAY
                    or scan.depth != 1
                    or scan.in_string
                ):
                    raise self._too_long()
                stop += 1
            filled = at + resume
            limit = min(
                size,
                stop,
                resume + (batch_bytes - filled if filled < batch_bytes else MAX_WINDOW),
            )
            final = self.done and limit == size
            resume, end, found = scan.scan(self.buf, resume, limit, final)
            if found is not None:  # what ends in the scan is within `room`
                cut = counted = at + found
                chars = 0
            if end is not None:
                if self.buf[end - 1] != _CLOSING_ARRAY:  # the scan takes any bracket
                    raise StreamError("expected ']' or ','")
                chars += _chars(self.buf[counted - at : end - 1])
                if chars > self._max_chars:
                    raise self._too_long()
                held.append(self.buf[start : end - 1])
                self.pos = end
                items = self._batch(prefix, held)
                if items[0]:
                    yield items
                return
            if final:
                raise StreamError("the body ends inside a value")
            if cut and at + resume >= batch_bytes:
                if cut >= held_bytes:  # in the buffer, as usual
                    held.append(self.buf[start : cut - at])
                    start, held_bytes = cut - at, 0
                    items = self._batch(prefix, held)
                else:
                    head, held = _split(held, cut)
                    held_bytes -= cut
                    items = self._batch(prefix, head)
                counted -= cut
                prefix, cut = b"[0 ", 0  # the next batch starts with a comma
                yield items
                del items
                continue
            if limit == size:
                if counted - at < resume:
                    chars += _chars(self.buf[counted - at : resume])
                    counted = at + resume
                piece = self.buf[start:resume]
                held.append(piece)
                held_bytes += len(piece)
                del piece
                self.more(resume)
                start = resume = 0

    def _batch(self, prefix: bytes, pieces: list[bytes]) -> tuple[list[Any], bytes]:
        """Decode consecutive elements of an array, as `pieces` of their bytes, with
        one call of the decoder: wrapped as an array, after a `0 ` for pieces that
        start with the comma after an element. Empties `pieces`. Return the elements
        and, where `digests` is set, a digest of the bytes decoded (BLAKE2b, 16
        bytes), else `b""`."""
        data = b"".join((prefix, *pieces, b"]"))
        pieces.clear()
        digest = hashlib.blake2b(data, digest_size=16).digest() if self.digests else b""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StreamError(f"the body is not UTF-8 ({exc.reason})") from None
        del data
        items: list[Any] = self._decode(text)
        if prefix != b"[":
            del items[0]
        return items, digest

    def _decode(self, text: str) -> Any:
        try:
            return self._decoder.decode(text)
        except RecursionError:  # not expected: the scan counted the levels
            raise self._too_deep() from None
        except json.JSONDecodeError as exc:
            raise StreamError(exc.msg) from None
        except ValueError as exc:  # NaN, Infinity
            raise StreamError(str(exc)) from None

    def _too_long(self) -> LimitExceeded:
        return LimitExceeded(
            f"a single JSON value is longer than {self._max_chars:,} characters"
        )

    def _too_deep(self) -> LimitExceeded:
        return _deep_error(self.max_depth)


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
    for _ in _elements(reader, array_key, on_envelope):
        yield reader.value(2)


class Whole(NamedTuple):
    """An element of the array that is not an object, decoded whole."""

    value: Any


class Member(NamedTuple):
    """A key of an element and its value, decoded whole (the nested key too when
    its value is not an array)."""

    key: str
    value: Any


class Items(NamedTuple):
    """Consecutive elements of an element's nested array, in the array's order.

    `first` marks the array's first batch (an empty array gives one empty batch): a
    later one under the same key starts the array over, as the last value of a
    repeated key wins in JSON. `digest` is a digest of the batch's bytes where
    `stream_parts` was asked for them (`b""` otherwise, and for an empty array):
    equal digests mean the same bytes, so the same elements, parsed the same way.
    """

    values: list[Any]
    first: bool
    digest: bytes = b""


class End:
    """The element whose parts came before is complete."""

    __slots__ = ()


END = End()
Part = Whole | Member | Items | End


def stream_parts(
    chunks: Iterable[bytes],
    array_key: str,
    nested_key: str,
    on_envelope: Callable[[str, Any], None],
    *,
    max_value_chars: int = MAX_VALUE_CHARS,
    max_depth: int = MAX_DEPTH,
    batch_bytes: int | None = None,
    digests: bool = False,
) -> Iterator[Part]:
    """Yield the elements of the top-level object's `array_key` array in parts, as
    they arrive: the array under `nested_key` in each element in batches.

    An element that is an object gives a `Member` for each key in order, except
    that an array under `nested_key` gives `Items` batches of its elements, then
    `END`; any other element gives one `Whole`. A batch is decoded with one call of
    the C decoder, once the last byte of its last element has arrived. It is cut at
    the end of the last element that is an object or an array within its first
    `batch_bytes` bytes (default `BATCH_BYTES`); when there is none (one element that
    long), at the end of the last one in the scan window (at most 64 KiB) where the
    first one ends after them. So a bucket of results is never held whole, whatever
    its size.

    `on_envelope`, errors and limits as for `stream_object`; `max_value_chars`
    holds for each element of a nested array with the comma and whitespace before
    it (elements that are no object or array: together with those after them, up to
    the next object or array or the array's end; see the module notes). With
    `digests`, each `Items` carries a digest of its batch's bytes: a batch's cut
    depends on its bytes alone, so an array sent again byte for byte gives the same
    batches and digests, however the body's chunks fall.
    """
    reader = _Reader(chunks, max_value_chars, max_depth)
    reader.digests = digests
    batch = BATCH_BYTES if batch_bytes is None else batch_bytes
    for _ in _elements(reader, array_key, on_envelope):
        yield from _parts(reader, nested_key, batch)


def _parts(reader: _Reader, nested_key: str, batch_bytes: int) -> Iterator[Part]:
    """Yield the parts of the element at the position, 2 containers deep."""
    if reader.peek() != b"{":
        yield Whole(reader.value(2))
        return
    if reader.max_depth < 3:  # the object's own level, as `value` counts it
        raise _deep_error(reader.max_depth)
    reader.pos += 1
    if reader.peek() == b"}":
        reader.pos += 1
        yield END
        return
    while True:
        key = reader.value(3)
        if not isinstance(key, str):
            raise StreamError("expected an object key")
        reader.expect(b":")
        if key == nested_key and reader.peek() == b"[":
            first = True
            for values, digest in reader.batches(3, batch_bytes):
                yield Items(values, first, digest)
                del values  # not held while the next batch is decoded
                first = False
            if first:
                yield Items([], True)
        else:
            yield Member(key, reader.value(3))
        if reader.peek() == b",":
            reader.pos += 1
            continue
        reader.expect(b"}")
        break
    yield END


def _elements(
    reader: _Reader, array_key: str, on_envelope: Callable[[str, Any], None]
) -> Iterator[None]:
    """Read the top-level object, giving its values but `array_key`'s elements to
    `on_envelope`; yield at each element, positioned at it: the caller reads it
    before resuming."""
    first = reader.peek()
    if first and first in _NOT_AN_OBJECT:
        raise NotAnObject("expected an object")
    reader.expect(b"{")
    if reader.peek() == b"}":
        reader.pos += 1
    else:
        while True:
            key = reader.value(1)
            if not isinstance(key, str):
                raise StreamError("expected an object key")
            reader.expect(b":")
            if key == array_key:
                if reader.peek() != b"[":
                    on_envelope(key, reader.value(1))  # the caller reports the type
                else:
                    on_envelope(key, [])  # present; its elements are yielded
                    reader.pos += 1
                    if reader.peek() == b"]":
                        reader.pos += 1
                    else:
                        while True:
                            yield
                            if reader.peek() == b",":
                                reader.pos += 1
                                continue
                            reader.expect(b"]")
                            break
            else:
                on_envelope(key, reader.value(1))
            if reader.peek() == b",":
                reader.pos += 1
                continue
            reader.expect(b"}")
            break
    if reader.peek() != b"":
        raise StreamError("unexpected text after the object")
