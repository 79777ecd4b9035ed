"""Reading a GGUF file's header (metadata keys) without loading the model.

Used to tell a base model from a chat model before the engine starts (llama-server substitutes a
default template when the file has none) and to size GPU offload::

    gguf_block_count(path), gguf_has_key(path, "tokenizer.chat_template")
    gguf_tokenizer_info(path).fim        # declares fill-in-the-middle tokens (code completion)
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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


# --- fill-in-the-middle tokens ------------------------------------------------------------------
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}  # fmt: skip
_FIM_KEYS = {
    # role -> the metadata keys that name its token, current name first (llama.cpp's convert script
    # wrote prefix/suffix/middle_token_id before it settled on fim_pre/suf/mid_token_id).
    "prefix": ("tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.prefix_token_id"),
    "suffix": ("tokenizer.ggml.fim_suf_token_id", "tokenizer.ggml.suffix_token_id"),
    "middle": ("tokenizer.ggml.fim_mid_token_id", "tokenizer.ggml.middle_token_id"),
    "repo": ("tokenizer.ggml.fim_rep_token_id",),
    "file_sep": ("tokenizer.ggml.fim_sep_token_id",),
    "pad": ("tokenizer.ggml.fim_pad_token_id",),
}
_TOKENS = "tokenizer.ggml.tokens"


@dataclass(frozen=True)
class ControlToken:
    """One control token: its id in the vocabulary and its text (e.g. 92 and ``<|fim_prefix|>``)."""

    id: int
    text: str


@dataclass(frozen=True)
class TokenizerInfo:
    """What code completion needs from a GGUF's tokenizer: the FIM tokens it declares, and its BOS.

    ``prefix``/``suffix``/``middle`` are all set or all None (a model has fill-in-the-middle or not);
    ``repo``/``file_sep`` mark repository-level context (Qwen2.5-Coder style) when declared.
    """

    bos: ControlToken | None = None
    prefix: ControlToken | None = None
    suffix: ControlToken | None = None
    middle: ControlToken | None = None
    repo: ControlToken | None = None
    file_sep: ControlToken | None = None
    pad: ControlToken | None = None

    @property
    def fim(self) -> bool:
        """Whether the model declares the three fill-in-the-middle tokens."""
        return self.prefix is not None and self.suffix is not None and self.middle is not None


def _read_scalar(fh: BinaryIO, vtype: int) -> int | float | bool:
    fmt = _SCALARS[vtype]
    value: int | float | bool = struct.unpack(fmt, fh.read(struct.calcsize(fmt)))[0]
    return value


def gguf_metadata(path: Path, select: Callable[[str], bool]) -> dict[str, int | float | bool | str]:
    """The scalar and string values of the header keys ``select`` picks (empty if unreadable).

    ``gguf_metadata(path, lambda k: k == "general.architecture" or k.endswith(".pooling_type"))``
    tells a reranking GGUF (pooling type 4, rank) from a generative one.
    """
    found: dict[str, int | float | bool | str] = {}
    try:
        with path.open("rb") as fh:
            for key, vtype in _entries(fh):
                if select(key) and vtype == 8:
                    found[key] = _read_str(fh)
                elif select(key) and vtype in _SCALARS:
                    found[key] = _read_scalar(fh, vtype)
                else:
                    _skip(fh, vtype)
    except (OSError, struct.error, KeyError):
        return found
    return found


def gguf_tokenizer_info(path: Path) -> TokenizerInfo:
    """The FIM and BOS tokens a GGUF declares (``tokenizer.ggml.fim_*_token_id`` and friends).

    An unreadable file, or one that declares none, gives an empty :class:`TokenizerInfo`: code
    completion then continues the prefix instead of filling in the middle.
    """
    ids: dict[str, int] = {}
    add_bos = True
    texts: dict[int, str] = {}
    wanted = {key: role for role, keys in _FIM_KEYS.items() for key in keys}
    try:
        with path.open("rb") as fh:
            for key, vtype in _entries(fh):
                if key in wanted and vtype in _INTS:
                    role = wanted[key]
                    value = int(_read_scalar(fh, vtype))
                    if role not in ids or key == _FIM_KEYS[role][0]:
                        ids[role] = value
                elif key == "tokenizer.ggml.bos_token_id" and vtype in _INTS:
                    ids["bos"] = int(_read_scalar(fh, vtype))
                elif key == "tokenizer.ggml.add_bos_token" and vtype == 7:
                    add_bos = bool(_read_scalar(fh, vtype))
                elif key == _TOKENS and vtype == 9:
                    texts = _token_texts(fh)
                else:
                    _skip(fh, vtype)
    except (OSError, struct.error, KeyError, ValueError):
        return TokenizerInfo()
    if not add_bos:
        ids.pop("bos", None)
    found = {role: ControlToken(i, texts.get(i, f"<token {i}>")) for role, i in ids.items()}
    info = TokenizerInfo(**found)
    if not info.fim:  # a partial declaration is no fill-in-the-middle support
        info = TokenizerInfo(bos=info.bos)
    return info


def _token_texts(fh: BinaryIO) -> dict[int, str]:
    """Read the ``tokenizer.ggml.tokens`` array (positioned at its value): every token's text by id."""
    item_type, count = struct.unpack("<IQ", fh.read(12))
    if item_type != 8:
        for _ in range(count):
            _skip(fh, item_type)
        return {}
    return {i: _read_str(fh) for i in range(count)}
