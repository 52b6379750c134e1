"""Render samples as Prometheus text exposition, in chunks of bounded size.

Pure: samples in, bytes out. Each line is `name{k="v",...} value timestamp_ms`, labels
sorted, label values escaped (backslash, newline, double quote), values in the shortest
form that parses back to the same float. Names are checked against the Prometheus
charset, because VictoriaMetrics answers 204 even when it drops a malformed line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from openai_cost_pusher.model import Labels, Sample

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024


def escape_label_value(value: str) -> str:
    """Escape a label value: `\\` first, then newline, then double quote."""
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


_SPECIAL = {"nan": "NaN", "inf": "+Inf", "-inf": "-Inf"}


def format_value(value: float) -> str:
    """Return the shortest text that parses back to `value`, or +Inf, -Inf, NaN."""
    text = repr(float(value))
    return _SPECIAL.get(text, text)


def series_prefix(name: str, labels: Labels) -> str:
    """Return `name{k="v",...}` for one series, validating name and label names."""
    # fullmatch: `$` in match() would accept a name ending in a newline
    if not _METRIC_NAME.fullmatch(name):
        msg = f"invalid metric name {name!r}"
        raise ValueError(msg)
    if not labels:
        return name
    parts = []
    for key, value in labels:
        if not _LABEL_NAME.fullmatch(key):
            msg = f"invalid label name {key!r} on {name}"
            raise ValueError(msg)
        parts.append(f'{key}="{escape_label_value(value)}"')
    return name + "{" + ",".join(parts) + "}"


def render_chunks(
    samples: Iterable[Sample],
    max_bytes: int = DEFAULT_CHUNK_BYTES,
    *,
    timestamps: bool = True,
) -> Iterator[bytes]:
    """Yield the exposition in pieces of about `max_bytes` or less, whole lines only.

    The series prefix (`name{labels} `) is built once per distinct series: a backfill
    repeats each series for every day. Prefixes are found by the identity of the
    labels tuple, which every sample of a series shares, because hashing a tuple of
    label pairs for each sample would cost more than the rest of the line; the cache
    entry keeps the tuple alive, so its id cannot be reused while this runs. Sizes
    count UTF-8 bytes, not characters. Without `timestamps` (for a scrape endpoint)
    lines end after the value.
    """
    # id(labels) -> (labels, name, "prefix ", extra UTF-8 bytes of the prefix)
    prefixes: dict[int, tuple[Labels, str, str, int]] = {}
    special = _SPECIAL
    parts: list[str] = []
    size = 0
    for sample in samples:
        labels = sample.labels
        entry = prefixes.get(id(labels))
        if entry is None or entry[0] is not labels or entry[1] != sample.name:
            prefix = series_prefix(sample.name, labels) + " "
            entry = (labels, sample.name, prefix, len(prefix.encode()) - len(prefix))
            prefixes[id(labels)] = entry
        text = repr(sample.value)  # floats by contract; an int renders as itself
        value = special.get(text, text)
        if timestamps:
            line = f"{entry[2]}{value} {sample.ts_ms}\n"
        else:
            line = f"{entry[2]}{value}\n"
        parts.append(line)
        size += len(line) + entry[3]
        if size >= max_bytes:
            yield "".join(parts).encode()
            parts, size = [], 0
    if parts:
        yield "".join(parts).encode()


def render_lines(
    samples: Iterable[Sample], *, timestamps: bool = True
) -> Iterator[str]:
    """Yield one exposition line (with its newline) per sample."""
    for chunk in render_chunks(samples, 1, timestamps=timestamps):
        yield chunk.decode()


def render(samples: Iterable[Sample], *, timestamps: bool = True) -> bytes:
    """Return the whole exposition of `samples` as UTF-8 bytes."""
    return b"".join(render_chunks(samples, timestamps=timestamps))
