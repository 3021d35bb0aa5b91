"""disentanglement_lib's dataset names (``dataset.name`` in a gin file) -> vaelens datasets.

unsupervised_study_v1 trained on seven datasets; three have a vaelens counterpart with the
same factors and 64x64 images: ``dsprites_full`` -> ``dsprites``, ``shapes3d`` ->
``shapes3d``, ``smallnorb`` -> ``smallnorb``. ``color_dsprites``, ``noisy_dsprites``,
``scream_dsprites`` and ``cars3d`` are not supported yet (no vaelens dataset renders them);
they, and any other name, end in one :class:`~vaelens.errors.DatasetError` line.
"""

from __future__ import annotations

from vaelens.errors import DatasetError

__all__ = ["DLIB_DATASETS", "UNSUPPORTED_DATASETS", "vaelens_dataset"]

#: disentanglement_lib name -> vaelens dataset name
DLIB_DATASETS: dict[str, str] = {
    "dsprites_full": "dsprites",
    "shapes3d": "shapes3d",
    "smallnorb": "smallnorb",
}
#: disentanglement_lib datasets of the zoo that vaelens cannot load yet
UNSUPPORTED_DATASETS: tuple[str, ...] = (
    "color_dsprites",
    "noisy_dsprites",
    "scream_dsprites",
    "cars3d",
)


def vaelens_dataset(name: object, source: str = "dataset.name") -> str:
    """The vaelens dataset for disentanglement_lib's ``name``; ``source`` names the file."""
    if isinstance(name, str) and name in DLIB_DATASETS:
        return DLIB_DATASETS[name]
    if isinstance(name, str) and name in UNSUPPORTED_DATASETS:
        raise DatasetError(
            f"{source}: disentanglement_lib dataset {name!r} is not supported yet "
            f"(supported: {', '.join(sorted(DLIB_DATASETS))})"
        )
    raise DatasetError(
        f"{source}: unknown disentanglement_lib dataset {name!r} "
        f"(expected one of {', '.join(sorted(DLIB_DATASETS))})"
    )
