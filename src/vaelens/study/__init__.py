"""Studies: architectures x datasets x seeds x hyper-parameters, trained, analysed and scored.

``config`` (the study file and its validation), ``presets`` (the built-in studies),
``runner`` (the resumable driver: a local pool of processes or Ray tasks), ``job`` (one run:
train, analyse, score), ``store`` (``study.sqlite``, written by the driver only), ``lock``
(one driver a study), ``adopt`` (runs analysed from finished training in a folder,
``run_study(trained=...)``) and ``zoo`` (a study over disentanglement_lib's pretrained
models).
Import the modules themselves (``vaelens.study.runner.run_study``): this package imports
none of them, so that a worker loads only what its job needs.

Imports from: analysis, metrics, train, zoo, errors, io.
"""
