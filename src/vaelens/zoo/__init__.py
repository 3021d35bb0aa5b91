"""disentanglement_lib's pretrained zoo: reading its models without TensorFlow.

- :mod:`~vaelens.zoo.tfckpt`: a reader and a minimal writer of TensorFlow's checkpoint
  format (tensor bundle: a LevelDB-table index + raw data shards), hand-parsed;
- :mod:`~vaelens.zoo.crc32c`: the CRC-32C and its mask, as the format uses them;
- :mod:`~vaelens.zoo.dlib`: disentanglement_lib's variable names, shapes and layouts and
  their mapping onto ``backbone="dlib"`` (:func:`dlib_state_dict`);
- :mod:`~vaelens.zoo.archive`: the needed members of a model zip or directory, read safely;
- :mod:`~vaelens.zoo.datasets`: dataset names (``dsprites_full`` -> ``dsprites``, ...);
- :mod:`~vaelens.zoo.download`: the zoo's addresses and a download with an offline message;
- :mod:`~vaelens.zoo.gin`: a literal-only reader of gin files (no eval);
- :mod:`~vaelens.zoo.importer`: :func:`import_model`, one model -> a vaelens run directory
  (``zoo.json`` beside it, read back by :func:`read_zoo_info`).

See docs/zoo.md for what was verified against TensorFlow.

Imports from: data, errors, io, models, train.
"""

from __future__ import annotations

from vaelens.zoo.archive import ModelFiles, read_model
from vaelens.zoo.datasets import DLIB_DATASETS, UNSUPPORTED_DATASETS, vaelens_dataset
from vaelens.zoo.dlib import DLIB_TO_VAELENS, dlib_state_dict, dlib_variable_shapes
from vaelens.zoo.download import N_MODELS, download_model, model_path, model_url
from vaelens.zoo.gin import GinRef, parse_gin
from vaelens.zoo.importer import import_model, read_zoo_info
from vaelens.zoo.tfckpt import CheckpointReader, read_checkpoint, write_checkpoint

__all__ = [
    "DLIB_DATASETS",
    "DLIB_TO_VAELENS",
    "N_MODELS",
    "UNSUPPORTED_DATASETS",
    "CheckpointReader",
    "GinRef",
    "ModelFiles",
    "dlib_state_dict",
    "dlib_variable_shapes",
    "download_model",
    "import_model",
    "model_path",
    "model_url",
    "parse_gin",
    "read_checkpoint",
    "read_model",
    "read_zoo_info",
    "vaelens_dataset",
    "write_checkpoint",
]
