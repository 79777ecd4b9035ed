"""Reading a GGUF file's header (metadata keys) without loading the model.

Used to tell a base model from a chat model before the engine starts (llama-server substitutes a
default template when the file has none) and to size GPU offload::

    gguf_block_count(path), gguf_has_key(path, "tokenizer.chat_template")
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

_GGUF_MAGIC = b"GGUF"
# Fixed sizes of GGUF scalar value types (by type id); 8 = string, 9 = array.
_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_INTS = {4: "<I", 5: "<i", 10: "<Q", 11: "<q"}


def _read_str(fh: BinaryIO) -> str:
    (n,) = struct.unpack("<Q", fh.read(8))
    return fh.read(n).decode("utf-8", "replace")


def _skip(fh: BinaryIO, vtype: int) -> None:
    if vtype == 8:
        (n,) = struct.unpack("<Q", fh.read(8))
        fh.seek(n, 1)
    elif vtype == 9:
        item_type, count = struct.unpack("<IQ", fh.read(12))
        if item_type in _SIZES:
            fh.seek(_SIZES[item_type] * count, 1)
        else:
            for _ in range(count):
                _skip(fh, item_type)
    else:
        fh.seek(_SIZES[vtype], 1)


def _entries(fh: BinaryIO) -> Iterator[tuple[str, int]]:
    """(key, value type) for each metadata entry; the caller reads or skips the value."""
    if fh.read(4) != _GGUF_MAGIC:
        return
    _version, _tensors, kv_count = struct.unpack("<IQQ", fh.read(20))
    for _ in range(kv_count):
        key = _read_str(fh)
        (vtype,) = struct.unpack("<I", fh.read(4))
        yield key, vtype


def gguf_block_count(path: Path) -> int | None:
    """The model's layer count (``<arch>.block_count``) from a GGUF header, or None if unreadable."""
    try:
        with path.open("rb") as fh:
            for key, vtype in _entries(fh):
                if key.endswith(".block_count") and vtype in _INTS:
                    fmt = _INTS[vtype]
                    return int(struct.unpack(fmt, fh.read(struct.calcsize(fmt)))[0])
                _skip(fh, vtype)
    except (OSError, struct.error, KeyError):
        return None
    return None


def gguf_has_key(path: Path, wanted: str) -> bool:
    """Whether the GGUF header has the metadata key ``wanted`` (False if unreadable)."""
    try:
        with path.open("rb") as fh:
            for key, vtype in _entries(fh):
                if key == wanted:
                    return True
                _skip(fh, vtype)
    except (OSError, struct.error, KeyError):
        return False
    return False
