"""How a stored block's lines are written in its row, and read back.

A block is consecutive lines of one stream, read at one or more instants. Its row keeps either
`text` (the lines joined by newlines, all read at the row's `ts`) or `packed`: a zstd frame of
`[offsets, text]` as JSON, where `offsets` (or null) gives each line's instant in microseconds
after `ts`. A block is packed when its lines were read at several instants, or when zstd makes it
at most PACK_SAVES of its size; text shorter than PACK_FROM, or that does not compress, stays as
it is, so incompressible output costs no more than before."""
from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta

import zstandard

LEVEL = 3  # zstd's default: about 400 MB/s here, and most of what the higher levels save on logs
PACK_FROM = 128
PACK_SAVES = 0.9
_local = threading.local()  # zstandard's (de)compressor objects are one per thread


def _codecs() -> tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]:
    """This thread's compressor and decompressor, made once."""
    if not hasattr(_local, "pair"):
        _local.pair = zstandard.ZstdCompressor(level=LEVEL), zstandard.ZstdDecompressor()
    return _local.pair


def encode(text: str, offsets: list[int] | None) -> tuple[str | None, bytes | None]:
    """(text, packed) of a row, one of them None. `offsets`: each line's microseconds after the
    block's `ts`, or None when every line was read then."""
    if offsets is None and len(text) < PACK_FROM:
        return text, None
    payload = json.dumps([offsets, text], ensure_ascii=False, separators=(",", ":")).encode()
    packed = _codecs()[0].compress(payload)
    if offsets is None and len(packed) > PACK_SAVES * len(text.encode()):
        return text, None
    return None, packed


def decode(text: str | None, packed: bytes | None) -> tuple[str, list[int] | None]:
    """A row's (text, offsets)."""
    if packed is None:
        return text, None
    offsets, text = json.loads(_codecs()[1].decompress(packed))
    return text, offsets


def instants(ts: datetime, offsets: list[int] | None, count: int) -> list[datetime]:
    """Each of a block's `count` lines' instant."""
    if offsets is None:
        return [ts] * count
    return [ts + timedelta(microseconds=us) for us in offsets]
