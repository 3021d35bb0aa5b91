"""A reader and a minimal writer of TensorFlow's checkpoint format (the tensor bundle).

No TensorFlow or protobuf dependency: the format is parsed by hand.

``<prefix>.index``
    A LevelDB-format table (SSTable): data blocks of prefix-compressed ``key -> value``
    entries with restart points, an index block pointing at them, an (empty) metaindex
    block and a 48-byte footer (the two block handles as varints, zero padding, the magic
    number ``0xdb4775248b80fb57``). Every block is followed by a compression byte (only
    0, uncompressed, is read: TensorFlow writes bundle indices uncompressed) and a masked
    CRC-32C of block + that byte. Key ``""`` holds a ``BundleHeaderProto`` (shard count,
    endianness); every other key is a tensor name with a ``BundleEntryProto``: dtype,
    shape, shard id, offset, size and the masked CRC-32C of the tensor's bytes.
``<prefix>.data-0000i-of-0000N``
    The tensors' raw bytes, little-endian, row-major; string tensors as TensorFlow writes
    them (varint lengths, a masked CRC-32C of the lengths, the bytes).

What was checked against TensorFlow 2.21 (tensorflow-cpu, once, outside the test suite):
this reader reads a ``tf.compat.v1.train.Saver`` checkpoint and a ``tf.train.Checkpoint``
(whose object graph is a string tensor), both committed under ``tests/data/tf_checkpoints``;
``tf.train.load_checkpoint`` reads what :func:`write_checkpoint` writes (157 tensors of 8
dtypes over several table blocks, values and dtypes equal).

:class:`CheckpointReader` reads the index at once and tensors on demand, checking every
block and tensor CRC (``verify=False`` skips the tensor checks). Any malformation ends in
one :class:`~vaelens.errors.CheckpointError` line naming the file and what was expected.
:func:`write_checkpoint` writes one shard and one index in the same format (used by the
tests to build disentanglement_lib-like model directories; TensorFlow reads it, see
docs/zoo.md). Partitioned (sliced) variables are not supported.
"""

from __future__ import annotations

import itertools
import math
import os
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vaelens.errors import CheckpointError
from vaelens.zoo.crc32c import crc32c, mask, unmask

__all__ = [
    "DTYPES",
    "CheckpointReader",
    "TensorEntry",
    "read_checkpoint",
    "shard_name",
    "write_checkpoint",
]

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_TRAILER_SIZE = 5

#: TensorFlow DataType enum -> NumPy dtype (little-endian); 7 (DT_STRING) is read as bytes
DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),
    2: np.dtype("<f8"),
    3: np.dtype("<i4"),
    4: np.dtype("u1"),
    5: np.dtype("<i2"),
    6: np.dtype("i1"),
    9: np.dtype("<i8"),
    10: np.dtype("?"),
    17: np.dtype("<u2"),
    19: np.dtype("<f2"),
    22: np.dtype("<u4"),
    23: np.dtype("<u8"),
}
DT_STRING = 7
_CODES = {v: k for k, v in DTYPES.items()}


def shard_name(prefix: str | os.PathLike[str], shard: int, num_shards: int) -> str:
    """``<prefix>.data-0000<shard>-of-0000<num_shards>``."""
    return f"{os.fspath(prefix)}.data-{shard:05d}-of-{num_shards:05d}"


# --------------------------------------------------------------------------- wire format


def _varint(buf: bytes, pos: int, where: str) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise CheckpointError(f"{where}: truncated varint (expected more bytes)")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise CheckpointError(f"{where}: varint longer than 10 bytes")


def _enc_varint(v: int) -> bytes:
    v &= (1 << 64) - 1  # negative int64: two's complement, 10 bytes
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _fields(buf: bytes, where: str) -> list[tuple[int, int, int | bytes]]:
    """The ``(field number, wire type, value)`` of a protobuf message, in order."""
    out: list[tuple[int, int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos, where)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(buf, pos, where)
        elif wire == 1:
            if pos + 8 > len(buf):
                raise CheckpointError(f"{where}: truncated 64-bit protobuf field {number}")
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos, where)
            if pos + n > len(buf):
                raise CheckpointError(f"{where}: truncated protobuf field {number}")
            value, pos = bytes(buf[pos : pos + n]), pos + n
        elif wire == 5:
            if pos + 4 > len(buf):
                raise CheckpointError(f"{where}: truncated 32-bit protobuf field {number}")
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        else:
            raise CheckpointError(f"{where}: unsupported protobuf wire type {wire}")
        out.append((number, wire, value))
    return out


def _field(number: int, value: int | bytes, wire: int | None = None) -> bytes:
    if isinstance(value, bytes):
        return _enc_varint(number << 3 | 2) + _enc_varint(len(value)) + value
    if wire == 5:
        return _enc_varint(number << 3 | 5) + struct.pack("<I", value)
    return _enc_varint(number << 3) + _enc_varint(value)


# --------------------------------------------------------------------------- entries


@dataclass(frozen=True)
class TensorEntry:
    """One ``BundleEntryProto``: where a tensor's bytes are and what they hold."""

    name: str
    dtype: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int  # masked, as stored

    @property
    def numpy_dtype(self) -> np.dtype | None:
        """The NumPy dtype, or ``None`` for a string tensor."""
        return DTYPES.get(self.dtype)


def _parse_entry(name: str, value: bytes, where: str) -> TensorEntry:
    dtype = shard = offset = size = crc = 0
    shape: tuple[int, ...] = ()
    for number, _wire, v in _fields(value, where):
        if number == 1:
            dtype = int(v)  # type: ignore[arg-type]
        elif number == 2:
            dims = []
            for n2, _w2, dim in _fields(v, where):  # type: ignore[arg-type]
                if n2 == 3 and dim:
                    raise CheckpointError(f"{where}: tensor {name!r} has an unknown rank")
                if n2 == 2:
                    size_ = 0
                    for n3, _w3, s in _fields(dim, where):  # type: ignore[arg-type]
                        if n3 == 1:
                            size_ = _signed(int(s))  # type: ignore[arg-type]
                    dims.append(size_)
            shape = tuple(dims)
        elif number == 3:
            shard = int(v)  # type: ignore[arg-type]
        elif number == 4:
            offset = _signed(int(v))  # type: ignore[arg-type]
        elif number == 5:
            size = _signed(int(v))  # type: ignore[arg-type]
        elif number == 6:
            crc = int(v)  # type: ignore[arg-type]
        elif number == 7:
            raise CheckpointError(
                f"{where}: tensor {name!r} is a partitioned variable (slices); "
                "expected whole tensors"
            )
    if dtype not in DTYPES and dtype != DT_STRING:
        raise CheckpointError(f"{where}: tensor {name!r} has unsupported dtype code {dtype}")
    if any(d < 0 for d in shape) or offset < 0 or size < 0:
        raise CheckpointError(f"{where}: tensor {name!r} has a negative shape, offset or size")
    return TensorEntry(name, dtype, shape, shard, offset, size, crc)


def _encode_entry(e: TensorEntry) -> bytes:
    dims = b"".join(_field(2, _field(1, d) if d else b"") for d in e.shape)
    out = _field(1, e.dtype) + _field(2, dims)
    if e.shard_id:
        out += _field(3, e.shard_id)
    if e.offset:
        out += _field(4, e.offset)
    if e.size:
        out += _field(5, e.size)
    return out + _field(6, e.crc32c, wire=5)


# --------------------------------------------------------------------------- SSTable


def _read_block(data: bytes, offset: int, size: int, where: str) -> bytes:
    end = offset + size + BLOCK_TRAILER_SIZE
    if offset < 0 or size < 0 or end > len(data) - FOOTER_SIZE:
        raise CheckpointError(
            f"{where}: block at {offset}+{size} runs past the end of the table "
            f"({len(data)} bytes; truncated?)"
        )
    block = data[offset : offset + size]
    kind = data[offset + size]
    (stored,) = struct.unpack_from("<I", data, offset + size + 1)
    if unmask(stored) != crc32c(data[offset : offset + size + 1]):
        raise CheckpointError(f"{where}: block at offset {offset} fails its CRC-32C check")
    if kind != 0:
        raise CheckpointError(
            f"{where}: block at offset {offset} is compressed (type {kind}); "
            "expected an uncompressed table as TensorFlow writes bundle indices"
        )
    return block


def _block_entries(block: bytes, where: str) -> list[tuple[bytes, bytes]]:
    if len(block) < 4:
        raise CheckpointError(f"{where}: table block of {len(block)} bytes (expected >= 4)")
    (n_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    end = len(block) - 4 * (n_restarts + 1)
    if end < 0:
        raise CheckpointError(f"{where}: table block claims {n_restarts} restart points")
    out: list[tuple[bytes, bytes]] = []
    pos, key = 0, b""
    while pos < end:
        shared, pos = _varint(block, pos, where)
        unshared, pos = _varint(block, pos, where)
        vlen, pos = _varint(block, pos, where)
        if shared > len(key) or pos + unshared + vlen > end:
            raise CheckpointError(f"{where}: malformed table entry at block offset {pos}")
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        out.append((key, block[pos : pos + vlen]))
        pos += vlen
    return out


def _table_entries(data: bytes, where: str) -> list[tuple[bytes, bytes]]:
    if len(data) < FOOTER_SIZE:
        raise CheckpointError(
            f"{where}: {len(data)} bytes, too short for a table footer "
            f"(expected >= {FOOTER_SIZE}; truncated?)"
        )
    footer = data[-FOOTER_SIZE:]
    (magic,) = struct.unpack_from("<Q", footer, 40)
    if magic != TABLE_MAGIC:
        raise CheckpointError(
            f"{where}: not a TensorFlow checkpoint index (bad table magic number; truncated?)"
        )
    pos = 0
    _meta_off, pos = _varint(footer, pos, where)
    _meta_size, pos = _varint(footer, pos, where)
    index_off, pos = _varint(footer, pos, where)
    index_size, pos = _varint(footer, pos, where)
    index = _block_entries(_read_block(data, index_off, index_size, where), where)
    entries: list[tuple[bytes, bytes]] = []
    for _sep, handle in index:
        off, p = _varint(handle, 0, where)
        size, _ = _varint(handle, p, where)
        entries += _block_entries(_read_block(data, off, size, where), where)
    keys = [k for k, _ in entries]
    if any(a >= b for a, b in itertools.pairwise(keys)):
        raise CheckpointError(f"{where}: table keys are not in strictly increasing order")
    return entries


def _block(entries: Sequence[tuple[bytes, bytes]], restart_interval: int) -> bytes:
    out, restarts, prev = bytearray(), [], b""
    for i, (key, value) in enumerate(entries):
        if i % restart_interval == 0:
            restarts.append(len(out))
            shared = 0
        else:
            shared = 0
            while shared < min(len(prev), len(key)) and prev[shared] == key[shared]:
                shared += 1
        out += _enc_varint(shared) + _enc_varint(len(key) - shared) + _enc_varint(len(value))
        out += key[shared:] + value
        prev = key
    restarts = restarts or [0]
    out += b"".join(struct.pack("<I", r) for r in restarts) + struct.pack("<I", len(restarts))
    return bytes(out)


def _with_trailer(block: bytes) -> bytes:
    return block + b"\0" + struct.pack("<I", mask(crc32c(block + b"\0")))


def _table(entries: Sequence[tuple[bytes, bytes]], block_entries: int = 64) -> bytes:
    out, index = bytearray(), []
    for i in range(0, len(entries), block_entries):
        chunk = entries[i : i + block_entries]
        block = _block(chunk, 16)
        index.append((chunk[-1][0], _enc_varint(len(out)) + _enc_varint(len(block))))
        out += _with_trailer(block)
    meta = _block([], 16)
    meta_handle = _enc_varint(len(out)) + _enc_varint(len(meta))
    out += _with_trailer(meta)
    index_block = _block(index, 1)
    index_handle = _enc_varint(len(out)) + _enc_varint(len(index_block))
    out += _with_trailer(index_block)
    handles = meta_handle + index_handle
    out += handles + b"\0" * (40 - len(handles)) + struct.pack("<Q", TABLE_MAGIC)
    return bytes(out)


# --------------------------------------------------------------------------- reader


class CheckpointReader:
    """Tensors of one checkpoint, given its index bytes and a way to get each shard's bytes.

    Use :meth:`open` for ``<prefix>.index`` + shards on disk; the constructor serves bytes
    already in memory (e.g. read from a zip). ``source`` names the files in error messages.
    """

    def __init__(
        self,
        index: bytes,
        shard: Callable[[int], bytes],
        *,
        source: str = "checkpoint",
    ) -> None:
        self.source = source
        where = f"{source}.index"
        header = None
        self._entries: dict[str, TensorEntry] = {}
        for key, value in _table_entries(index, where):
            if key == b"":
                header = value
                continue
            try:
                name = key.decode("utf-8")
            except UnicodeDecodeError:
                raise CheckpointError(f"{where}: tensor name is not UTF-8: {key!r}") from None
            self._entries[name] = _parse_entry(name, value, where)
        if header is None:
            raise CheckpointError(f"{where}: no bundle header (expected the entry with key '')")
        self.num_shards, endianness = 1, 0
        for number, _w, v in _fields(header, where):
            if number == 1:
                self.num_shards = int(v)  # type: ignore[arg-type]
            elif number == 2:
                endianness = int(v)  # type: ignore[arg-type]
        if endianness != 0:
            raise CheckpointError(f"{where}: big-endian bundle (expected little-endian)")
        for e in self._entries.values():
            if not 0 <= e.shard_id < self.num_shards:
                raise CheckpointError(
                    f"{where}: tensor {e.name!r} is in shard {e.shard_id} of {self.num_shards}"
                )
        self._shard = shard
        self._shards: dict[int, bytes] = {}

    @classmethod
    def open(cls, prefix: str | os.PathLike[str]) -> CheckpointReader:
        """The checkpoint at ``prefix`` (``prefix.index`` and its ``.data-*`` shards)."""
        prefix = os.fspath(prefix)
        index_path = Path(prefix + ".index")
        if not index_path.is_file():
            raise CheckpointError(f"{index_path}: no such file (expected a checkpoint index)")
        reader: CheckpointReader

        def shard(i: int) -> bytes:
            path = Path(shard_name(prefix, i, reader.num_shards))
            if not path.is_file():
                raise CheckpointError(f"{path}: no such file (expected a checkpoint shard)")
            return path.read_bytes()

        reader = cls(index_path.read_bytes(), shard, source=prefix)
        return reader

    def names(self) -> list[str]:
        """Tensor names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def entry(self, name: str) -> TensorEntry:
        """The :class:`TensorEntry` of ``name``."""
        if name not in self._entries:
            raise CheckpointError(f"{self.source}.index: no tensor {name!r}")
        return self._entries[name]

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """``name -> shape`` of every tensor."""
        return {n: e.shape for n, e in sorted(self._entries.items())}

    def _data(self, e: TensorEntry) -> bytes:
        if e.shard_id not in self._shards:
            self._shards[e.shard_id] = self._shard(e.shard_id)
        data = self._shards[e.shard_id]
        if e.offset + e.size > len(data):
            where = shard_name(self.source, e.shard_id, self.num_shards)
            raise CheckpointError(
                f"{where}: tensor {e.name!r} needs bytes {e.offset}..{e.offset + e.size}, "
                f"the shard has {len(data)} (truncated?)"
            )
        return data[e.offset : e.offset + e.size]

    def read(self, name: str, *, verify: bool = True) -> np.ndarray:
        """Tensor ``name`` as a NumPy array (strings: an object array of ``bytes``)."""
        e = self.entry(name)
        raw = self._data(e)
        where = shard_name(self.source, e.shard_id, self.num_shards)
        if e.dtype == DT_STRING:
            return self._strings(e, raw, where, verify)
        if verify and unmask(e.crc32c) != crc32c(raw):
            raise CheckpointError(f"{where}: tensor {name!r} fails its CRC-32C check")
        dtype = DTYPES[e.dtype]
        count = math.prod(e.shape)
        if count * dtype.itemsize != len(raw):
            raise CheckpointError(
                f"{where}: tensor {name!r} has {len(raw)} bytes, expected "
                f"{count * dtype.itemsize} for shape {e.shape} of {dtype}"
            )
        return np.frombuffer(raw, dtype=dtype).reshape(e.shape).astype(dtype.newbyteorder("="))

    def _strings(self, e: TensorEntry, raw: bytes, where: str, verify: bool) -> np.ndarray:
        count = math.prod(e.shape)
        lengths, pos = [], 0
        for _ in range(count):
            n, pos = _varint(raw, pos, where)
            lengths.append(n)
        if pos + 4 + sum(lengths) != len(raw):
            raise CheckpointError(f"{where}: string tensor {e.name!r} has a malformed layout")
        if verify:  # TF's checksum: the lengths as fixed-width integers, then what follows
            # (TF 2.21 checksums them as uint32, as checked; older writers may use uint64)
            want = unmask(e.crc32c)
            if all(
                crc32c(b"".join(struct.pack(fmt, n) for n in lengths) + raw[pos:]) != want
                for fmt in ("<I", "<Q")
            ):
                raise CheckpointError(f"{where}: tensor {e.name!r} fails its CRC-32C check")
        pos += 4
        out = np.empty(count, dtype=object)
        for i, n in enumerate(lengths):
            out[i] = raw[pos : pos + n]
            pos += n
        return out.reshape(e.shape)

    def read_all(self, *, verify: bool = True) -> dict[str, np.ndarray]:
        """Every tensor, by name."""
        return {n: self.read(n, verify=verify) for n in self.names()}


def read_checkpoint(
    prefix: str | os.PathLike[str], *, verify: bool = True
) -> dict[str, np.ndarray]:
    """Every tensor of the checkpoint at ``prefix``, by name."""
    return CheckpointReader.open(prefix).read_all(verify=verify)


# --------------------------------------------------------------------------- writer


def write_checkpoint(prefix: str | os.PathLike[str], tensors: Mapping[str, np.ndarray]) -> Path:
    """Write ``tensors`` as ``<prefix>.index`` + ``<prefix>.data-00000-of-00001``.

    Numeric NumPy arrays only (the dtypes of :data:`DTYPES`). Returns the index path.
    """
    prefix = os.fspath(prefix)
    data = bytearray()
    entries: list[tuple[bytes, bytes]] = []
    for name in sorted(tensors, key=lambda n: n.encode("utf-8")):
        arr = np.asarray(tensors[name])
        dtype = arr.dtype.newbyteorder("<") if arr.dtype.byteorder in "=>" else arr.dtype
        if dtype not in _CODES:
            raise CheckpointError(f"{prefix}: tensor {name!r} has unsupported dtype {arr.dtype}")
        raw = np.ascontiguousarray(arr, dtype=dtype).tobytes()
        entry = TensorEntry(
            name, _CODES[dtype], tuple(arr.shape), 0, len(data), len(raw), mask(crc32c(raw))
        )
        entries.append((name.encode("utf-8"), _encode_entry(entry)))
        data += raw
    header = _field(1, 1) + _field(3, _field(1, 1))  # num_shards 1, version.producer 1
    index = _table([(b"", header), *entries])
    Path(shard_name(prefix, 0, 1)).write_bytes(bytes(data))
    index_path = Path(prefix + ".index")
    index_path.write_bytes(index)
    return index_path
