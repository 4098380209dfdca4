"""DigitClassifierModel: the digit classifier as an estimator (fit, predict, evaluate, save, load).

It shares the detector's estimator base (estimator/base.py: parameters as dataclass
fields, the seeded hold-out, device placement) and saved files (estimator/files.py:
safetensors and ``classifier.json`` with the SHA-256 of the weights). It trains with
Adam and cross-entropy on the shared training loop (nn/loop.py), early-stopping on a
held-out share of the *training* set; the test set is only ever used by ``evaluate``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
from torch import nn

from ae_anomaly import __version__
from ae_anomaly.classifier.config import ClassifierTraining
from ae_anomaly.classifier.network import (
    ARCH_NAME,
    N_CLASSES,
    DigitClassifier,
    NetworkParams,
    random_shift,
)
from ae_anomaly.data.tensors import UINT8_SCALE, to_image_tensor
from ae_anomaly.errors import UserError
from ae_anomaly.estimator.base import ImageEstimator, placed, seeded
from ae_anomaly.estimator.files import (
    DIGEST_KEY,
    read_metadata,
    read_weights,
    write_model_folder,
)
from ae_anomaly.nn.callbacks import Callback, EarlyStopping
from ae_anomaly.nn.device import select_device
from ae_anomaly.nn.inference import batched_outputs
from ae_anomaly.nn.loop import Task, train
from ae_anomaly.params import FitParams, checked

FORMAT_NAME = "ae-anomaly-classifier"
FORMAT_VERSION = 1
META_FILE = "classifier.json"
# Images per forward pass when predicting; no gradients, so far more than a training batch.
PREDICT_BATCH = 1024


@dataclass(kw_only=True, eq=False, repr=False)
class DigitClassifierModel(NetworkParams, ClassifierTraining, ImageEstimator):
    """A trained ``DigitClassifier`` with fit / predict / predict_proba / evaluate / save / load.

    Fitted attributes: ``model_`` (the network, in eval mode after fit),
    ``input_shape_`` (C, H, W), ``device_``, ``classes_`` (0..9),
    ``class_names_``, ``dataset_`` (name of the data it was trained on, or
    None), ``history_`` (per-epoch train / validation cross-entropy),
    ``best_epoch_`` (whose weights were kept), ``n_train_``, ``n_val_``,
    ``val_accuracy_`` and ``train_seconds_``.
    """

    # Not the dataclass repr of the first parameter group, which shows only its fields.
    __repr__ = ImageEstimator.__repr__

    # -- fitting ---------------------------------------------------------------

    def fit(
        self,
        X: Any,
        y: Any,
        X_val: Any | None = None,
        y_val: Any | None = None,
        *,
        class_names: Sequence[str] | None = None,
        dataset: str | None = None,
        callbacks: Sequence[Callback] = (),
    ) -> DigitClassifierModel:
        """Train on images ``X`` with labels ``y`` (0..9); early-stop on ``X_val``, ``y_val``.

        Without a validation set, a random ``val_fraction`` of ``X`` is held
        out. ``class_names`` and ``dataset`` are only recorded (and saved).
        """
        training = self.validate_params()
        images = to_image_tensor(X)
        labels = _to_labels(y, len(images))
        if (X_val is None) != (y_val is None):
            raise UserError("give both X_val and y_val, or neither")
        if X_val is None:
            train_index, val_index = self.held_out(len(images))
            images, labels, val, val_labels = (
                images[train_index],
                labels[train_index],
                images[val_index],
                labels[val_index],
            )
        else:
            val = to_image_tensor(X_val)
            val_labels = _to_labels(y_val, len(val))
        if val.shape[1:] != images.shape[1:]:
            raise UserError(
                f"validation images have shape {tuple(val.shape[1:])}, "
                f"training images {tuple(images.shape[1:])}"
            )
        names = [str(i) for i in range(N_CLASSES)] if class_names is None else list(class_names)
        if len(names) != N_CLASSES:
            raise UserError(f"need {N_CLASSES} class names, got {len(names)}")
        self.device_ = select_device(self.device)
        self.input_shape_ = tuple(int(d) for d in images.shape[1:])
        task = Task(
            loss=nn.functional.cross_entropy,
            augment=self._shift if training.max_shift > 0 else None,
            train_targets=labels.to(self.device_),
            val_targets=val_labels.to(self.device_),
        )
        started = time.perf_counter()
        # The seed fixes the initial weights and the dropout masks.
        with seeded(self.seed):
            network = placed(self._network(self.input_shape_), self.device_)
            state = train(
                network,
                images.to(self.device_),
                val.to(self.device_),
                training,
                task,
                seed=self.seed,
                callbacks=[EarlyStopping(training.patience), *callbacks],
            )
        # Set only now: a fit that fails half-way leaves no half-trained "fitted" model.
        self.model_ = network.eval()
        self.train_seconds_ = time.perf_counter() - started
        self.history_ = [asdict(r) for r in state.history]
        self.best_epoch_ = state.best_epoch
        self.n_train_, self.n_val_ = len(images), len(val)
        self.classes_ = np.arange(N_CLASSES)
        self.class_names_ = names
        self.dataset_ = dataset
        self.val_accuracy_ = float(np.mean(self.predict(val) == val_labels.numpy()))
        return self

    def validate_params(self) -> ClassifierTraining:
        """Check the parameters with the config file's rules; return the training ones."""
        checked(FitParams, self, "classifier parameter")
        return checked(ClassifierTraining, self, "classifier parameter")

    def _shift(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return random_shift(batch, generator, self.max_shift)

    def _network(self, input_shape: Sequence[int]) -> DigitClassifier:
        return DigitClassifier(input_shape, self.channels, self.hidden, self.dropout)

    # -- predicting ------------------------------------------------------------

    def predict(self, X: Any) -> np.ndarray:
        """The predicted class (0..9) of each image: int64 array of length N.

        ``X``: uint8 (N, H, W) / (N, C, H, W) or float in [0, 1], numpy or torch.
        """
        return torch.cat([logits.argmax(1).cpu() for logits in self._logits(X)]).numpy()

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (softmax of the logits): float32 array (N, 10), rows sum to 1."""
        chunks = [torch.softmax(logits.float(), dim=1).cpu() for logits in self._logits(X)]
        return torch.cat(chunks).numpy()

    def _logits(self, X: Any) -> Iterator[torch.Tensor]:
        model = self._fitted_model()
        images = to_image_tensor(X)
        if tuple(images.shape[1:]) != self.input_shape_:
            raise UserError(
                f"the classifier was trained on images of shape {self.input_shape_}, "
                f"got {tuple(images.shape[1:])}"
            )
        for _, logits in batched_outputs(model, images, self.device_, PREDICT_BATCH):
            yield logits

    def evaluate(self, X: Any, y: Any) -> dict[str, Any]:
        """Accuracy, per-class precision / recall / F1 and the confusion matrix on (X, y)."""
        images = to_image_tensor(X)
        labels = _to_labels(y, len(images)).numpy()
        return classification_metrics(labels, self.predict(images), self.class_names_)

    def _fitted_model(self) -> nn.Module:
        if not hasattr(self, "model_"):
            raise UserError("this classifier is not fitted yet; call fit() or load() first")
        return self.model_  # type: ignore[no-any-return]

    # -- saving ----------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Write ``weights.safetensors`` and ``classifier.json`` into ``directory``."""
        model = self._fitted_model()
        return write_model_folder(
            Path(directory), dict(model.state_dict()), META_FILE, self._metadata()
        )

    def _metadata(self) -> dict[str, Any]:
        params = self.get_params()
        params["channels"], params["hidden"] = list(self.channels), list(self.hidden)
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "package_version": __version__,
            "arch": {
                "name": ARCH_NAME,
                "channels": list(self.channels),
                "hidden": list(self.hidden),
                "dropout": self.dropout,
                "n_classes": N_CLASSES,
            },
            "params": params,
            "input_shape": list(self.input_shape_),
            "normalisation": {"uint8_scale": UINT8_SCALE, "pixel_range": [0.0, 1.0]},
            "class_names": self.class_names_,
            "dataset": self.dataset_,
            "training": {
                "history": self.history_,
                "best_epoch": self.best_epoch_,
                "n_train": self.n_train_,
                "n_val": self.n_val_,
                "val_accuracy": self.val_accuracy_,
                "seconds": self.train_seconds_,
            },
        }

    @classmethod
    def load(cls, directory: str | Path, device: str = "auto") -> DigitClassifierModel:
        """Load a classifier written by ``save``; its predictions match the saved one's."""
        folder = Path(directory)
        if not folder.is_dir():
            raise UserError(f"classifier folder {folder} does not exist")
        meta_path = folder / META_FILE
        meta = read_metadata(meta_path, FORMAT_NAME, (FORMAT_VERSION,), "classifier")
        try:
            classifier = _from_metadata(cls, meta, device)
            expected_digest = str(meta[DIGEST_KEY])
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{meta_path} is missing or has a bad field: {exc}") from None
        network = classifier._network(classifier.input_shape_)
        state = read_weights(folder, META_FILE, expected_digest)
        try:
            network.load_state_dict(state)
        except RuntimeError as exc:
            reason = " ".join(str(exc).split())
            raise UserError(f"cannot load weights from {folder}: {reason}") from None
        classifier.device_ = select_device(device)
        classifier.model_ = placed(network, classifier.device_)
        classifier.model_.eval()
        classifier.classes_ = np.arange(N_CLASSES)
        return classifier


def _from_metadata(
    cls: type[DigitClassifierModel], meta: dict[str, Any], device: str
) -> DigitClassifierModel:
    """The classifier classifier.json describes, with its fitted summary (no weights yet)."""
    arch = meta["arch"]
    if arch["name"] != ARCH_NAME or arch["n_classes"] != N_CLASSES:
        raise ValueError(f"architecture {arch['name']!r} with {arch['n_classes']} classes")
    params = {
        **meta["params"],
        "channels": arch["channels"],
        "hidden": arch["hidden"],
        "dropout": arch["dropout"],
        "device": device,
    }
    classifier = cls(**params)
    classifier.input_shape_ = tuple(meta["input_shape"])
    classifier.class_names_ = [str(n) for n in meta["class_names"]]
    classifier.dataset_ = meta["dataset"]
    summary = meta["training"]
    classifier.history_ = list(summary["history"])
    classifier.best_epoch_ = int(summary["best_epoch"])
    classifier.n_train_, classifier.n_val_ = int(summary["n_train"]), int(summary["n_val"])
    classifier.val_accuracy_ = float(summary["val_accuracy"])
    classifier.train_seconds_ = float(summary["seconds"])
    if len(classifier.class_names_) != N_CLASSES:
        raise ValueError(f"{len(classifier.class_names_)} class names")
    return classifier


def _to_labels(y: Any, n: int) -> torch.Tensor:
    """Class labels as an int64 tensor of length ``n``, each in 0..9."""
    # A copy: torch takes no read-only numpy memory (the datasets' arrays are read-only).
    labels = y.cpu() if isinstance(y, torch.Tensor) else torch.as_tensor(np.array(y))
    if labels.ndim != 1 or len(labels) != n:
        raise UserError(
            f"need one label per image ({n}), got labels of shape {tuple(labels.shape)}"
        )
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise UserError(f"labels must be integers, got {labels.dtype}")
    labels = labels.to(torch.int64)
    if n and (int(labels.min()) < 0 or int(labels.max()) >= N_CLASSES):
        raise UserError(
            f"labels must lie in 0..{N_CLASSES - 1}, "
            f"got values in {int(labels.min())}..{int(labels.max())}"
        )
    return labels


def classification_metrics(
    y_true: Any, y_pred: Any, class_names: Sequence[str] | None = None
) -> dict[str, Any]:
    """Accuracy, per-class and macro precision / recall / F1, confusion matrix (rows: true)."""
    truth, predicted = np.asarray(y_true), np.asarray(y_pred)
    names = [str(i) for i in range(N_CLASSES)] if class_names is None else list(class_names)
    classes = list(range(N_CLASSES))
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=classes, zero_division=0
    )
    per_class = {
        str(k): {
            "name": names[k],
            "precision": float(precision[k]),
            "recall": float(recall[k]),
            "f1": float(f1[k]),
            "support": int(support[k]),
        }
        for k in classes
    }
    present = support > 0  # a class absent from a small slice has no recall to average
    return {
        "n": len(truth),
        "accuracy": float(np.mean(truth == predicted)),
        "errors": int(np.sum(truth != predicted)),
        "macro": {
            "precision": float(precision[present].mean()),
            "recall": float(recall[present].mean()),
            "f1": float(f1[present].mean()),
        },
        "min_recall": float(recall[present].min()),
        "per_class": per_class,
        "class_names": names,
        "confusion_matrix": confusion_matrix(truth, predicted, labels=classes).tolist(),
    }
