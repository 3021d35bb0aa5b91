"""The TensorFlow checkpoint reader/writer: TF-written bytes, round trips, damage, CRC-32C."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from vaelens.errors import CheckpointError
from vaelens.zoo.crc32c import _advance, _crc32c_numpy, crc32c, mask, unmask
from vaelens.zoo.tfckpt import CheckpointReader, read_checkpoint, write_checkpoint

TF_DATA = Path(__file__).parent / "data" / "tf_checkpoints"


def test_crc32c_known_values_and_the_vectorised_path():
    assert crc32c(b"123456789") == 0xE3069283 == _crc32c_numpy(b"123456789")
    assert crc32c(b"") == 0
    assert _crc32c_numpy(b"\0" * 32) == 0x8A9136AA  # RFC 3720 test vector
    data = os.urandom(20_011)
    assert _crc32c_numpy(data, chunks=37) == _advance(0xFFFFFFFF, data) ^ 0xFFFFFFFF
    assert unmask(mask(0x12345678)) == 0x12345678 and mask(0) == 0xA282EAD8


def test_reads_a_checkpoint_tensorflow_wrote_with_a_v1_saver():
    r = CheckpointReader.open(TF_DATA / "saver" / "variables")
    got = r.read_all()
    np.testing.assert_array_equal(
        got["encoder/e1/kernel"], np.arange(12, dtype=np.float32).reshape(2, 2, 1, 3) / 8 - 0.5
    )
    assert got["encoder/e1/kernel"].dtype == np.float32
    np.testing.assert_array_equal(got["encoder/e1/bias"], [0.25, -1.5, 3.0])
    np.testing.assert_array_equal(
        got["decoder/dense/kernel"], (np.arange(12, dtype=np.float64).reshape(3, 4) - 6) / 3
    )
    assert got["global_step"].dtype == np.int64 and got["global_step"] == 12345
    np.testing.assert_array_equal(got["steps"], np.arange(5, dtype=np.int32) * -7)
    np.testing.assert_array_equal(got["flags"], [True, False, True])


def test_reads_a_tf2_object_checkpoint_with_its_string_tensor():
    got = read_checkpoint(TF_DATA / "object" / "ckpt")
    np.testing.assert_array_equal(
        got["w/.ATTRIBUTES/VARIABLE_VALUE"], np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    )
    graph = got["_CHECKPOINTABLE_OBJECT_GRAPH"]
    assert graph.shape == () and b"VARIABLE_VALUE" in graph.item()


def test_write_then_read_round_trips_over_many_blocks(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {f"s/v{i:03d}/kernel": rng.standard_normal((2, i % 4 + 1)) for i in range(100)}
    tensors |= {
        "f32": rng.standard_normal((3, 4, 5)).astype(np.float32),
        "i64": np.arange(4, dtype=np.int64) - 2**40,
        "u8": np.arange(6, dtype=np.uint8).reshape(2, 3),
        "scalar": np.float32(2.5) * np.ones((), np.float32),
        "empty": np.zeros((0, 3), np.float32),
    }
    write_checkpoint(tmp_path / "ckpt", tensors)
    back = read_checkpoint(tmp_path / "ckpt")
    assert sorted(back) == sorted(tensors)
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape
        np.testing.assert_array_equal(back[k], v)


@pytest.fixture
def small(tmp_path):
    write_checkpoint(tmp_path / "m", {"a": np.arange(6, dtype=np.float32), "b": np.ones(3)})
    return tmp_path / "m"


def test_a_truncated_index_names_the_file(small):
    index = Path(f"{small}.index")
    index.write_bytes(index.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match=r"m\.index: .*(magic|truncated)"):
        CheckpointReader.open(small)
    index.write_bytes(b"\0" * 20)
    with pytest.raises(CheckpointError, match=r"m\.index: 20 bytes, too short"):
        CheckpointReader.open(small)


def test_a_damaged_index_block_fails_its_crc(small):
    index = Path(f"{small}.index")
    data = bytearray(index.read_bytes())
    data[3] ^= 0xFF
    index.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="CRC-32C"):
        CheckpointReader.open(small)


def test_a_truncated_or_damaged_shard_and_a_missing_tensor(small):
    shard = Path(f"{small}.data-00000-of-00001")
    raw = shard.read_bytes()
    shard.write_bytes(raw[:-4])
    r = CheckpointReader.open(small)
    with pytest.raises(CheckpointError, match=r"data-00000-of-00001: tensor 'b' needs bytes"):
        r.read("b")
    flipped = bytearray(raw)
    flipped[0] ^= 1
    shard.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="tensor 'a' fails its CRC-32C"):
        CheckpointReader.open(small).read("a")
    assert CheckpointReader.open(small).read("a", verify=False)[1] == 1.0
    with pytest.raises(CheckpointError, match="no tensor 'c'"):
        CheckpointReader.open(small).read("c")
    shard.unlink()
    with pytest.raises(CheckpointError, match="expected a checkpoint shard"):
        CheckpointReader.open(small).read("a")
    with pytest.raises(CheckpointError, match="expected a checkpoint index"):
        CheckpointReader.open(small.parent / "nothing")
