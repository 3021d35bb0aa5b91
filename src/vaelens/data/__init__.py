"""Ground-truth datasets: the contract, index arithmetic, the registry and downloads.

Imports from: errors, io, progress.
"""

from vaelens.data.base import (
    ArrayDataset,
    GroundTruthDataset,
    check_dataset,
    factor_index,
    factor_strides,
    factors_to_index,
    index_to_factors,
    intervention_pairs,
    resample_factor,
    sample_factors_uniform,
    sample_images,
    validate_factors,
)
from vaelens.data.registry import (
    DatasetSpec,
    RemoteFile,
    get_spec,
    list_datasets,
    load_dataset,
    register_dataset,
)

__all__ = [
    "ArrayDataset",
    "DatasetSpec",
    "GroundTruthDataset",
    "RemoteFile",
    "check_dataset",
    "factor_index",
    "factor_strides",
    "factors_to_index",
    "get_spec",
    "index_to_factors",
    "intervention_pairs",
    "list_datasets",
    "load_dataset",
    "register_dataset",
    "resample_factor",
    "sample_factors_uniform",
    "sample_images",
    "validate_factors",
]
