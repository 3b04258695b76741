"""Image classification, the task behind ``mobilenext train`` and ``validate``: its settings (``config``), its
training task on the shared engine (``train``), evaluation (``evaluate``, ``validate``) and what its files mean
(``files``). Every name below loads its module on first use; ``train``, ``validate`` and ``evaluate`` are
their modules (``mobilenext.classification.train.train``, ...; ``mobilenext.validate`` takes a path)."""

from .._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "ClassificationFiles": "files",
        "ClassificationTask": "train",
        "TrainConfig": "config",
        "parse_train_args": "config",
    },
)
