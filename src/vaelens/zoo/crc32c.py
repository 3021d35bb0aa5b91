"""CRC-32C (Castagnoli), as TensorFlow's checkpoints and LevelDB tables use it, and its mask.

:func:`crc32c` uses the ``crc32c`` package when it is installed (hardware-accelerated) and
otherwise a NumPy implementation: the data is cut into equal chunks whose CRC registers
are advanced side by side (one table lookup per byte, vectorised across chunks), and the
chunk registers are then combined with the GF(2) "advance over L zero bytes" matrix
(the zlib ``crc32_combine`` construction). A few MB take tens of milliseconds.

:func:`mask` / :func:`unmask` are LevelDB's: checksums stored next to data are masked
(rotated right by 15 bits plus a constant) so that a CRC of data containing CRCs stays
well-behaved.
"""

from __future__ import annotations

import numpy as np

__all__ = ["crc32c", "mask", "unmask"]

_POLY = 0x82F63B78  # reflected Castagnoli polynomial
_MASK_DELTA = 0xA282EAD8
_U32 = 0xFFFFFFFF


def _table() -> np.ndarray:
    table = np.zeros(256, dtype=np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        table[i] = c
    return table


_TABLE = _table()
_TABLE_LIST = [int(v) for v in _TABLE]


def _advance(reg: int, data: bytes | memoryview) -> int:
    """The CRC register after ``data``, starting from ``reg`` (no pre/post inversion)."""
    t = _TABLE_LIST
    for b in bytes(data):
        reg = t[(reg ^ b) & 0xFF] ^ (reg >> 8)
    return reg


def _mat_apply(mat: list[int], vec: int) -> int:
    out, i = 0, 0
    while vec:
        if vec & 1:
            out ^= mat[i]
        vec >>= 1
        i += 1
    return out


def _zeros_operator(n: int) -> list[int]:
    """The 32x32 GF(2) matrix (as 32 column images) that advances a register over n zeros."""
    one = [_advance(1 << i, b"\0") for i in range(32)]  # one zero byte
    result = [1 << i for i in range(32)]  # identity
    while n:
        if n & 1:
            result = [_mat_apply(one, c) for c in result]
        one = [_mat_apply(one, c) for c in one]
        n >>= 1
    return result


def _crc32c_numpy(data: bytes | memoryview, *, chunks: int | None = None) -> int:
    n = len(data)
    m = chunks if chunks is not None else max(256, n // 2048)
    length = n // m if m else 0
    reg = _U32
    if length < 64:  # small: the byte loop is quicker than the set-up
        return _advance(reg, data) ^ _U32
    arr = np.frombuffer(data, dtype=np.uint8, count=m * length).reshape(m, length)
    cols = np.ascontiguousarray(arr.T).astype(np.uint32)
    regs = np.zeros(m, dtype=np.uint32)
    for j in range(length):
        regs = _TABLE[(regs ^ cols[j]) & 0xFF] ^ (regs >> np.uint32(8))
    shift = _zeros_operator(length)
    for r in regs.tolist():
        reg = _mat_apply(shift, reg) ^ r
    reg = _advance(reg, memoryview(data)[m * length :])
    return reg ^ _U32


try:  # pragma: no cover - depends on an optional package
    import crc32c as _fast  # type: ignore[import-not-found]

    def crc32c(data: bytes | memoryview) -> int:
        """CRC-32C of ``data`` (``crc32c(b"123456789") == 0xE3069283``)."""
        return int(_fast.crc32c(bytes(data)))

except ImportError:

    def crc32c(data: bytes | memoryview) -> int:
        """CRC-32C of ``data`` (``crc32c(b"123456789") == 0xE3069283``)."""
        return _crc32c_numpy(data)


def mask(crc: int) -> int:
    """LevelDB's masked CRC: rotate right by 15 bits, add ``0xA282EAD8`` (mod 2**32)."""
    return ((((crc >> 15) | (crc << 17)) & _U32) + _MASK_DELTA) & _U32


def unmask(masked: int) -> int:
    """The inverse of :func:`mask`."""
    rot = (masked - _MASK_DELTA) & _U32
    return ((rot >> 17) | (rot << 15)) & _U32
