"""The digit classifier: a small convolutional network that names the digit in an image.

Issue 6 asks for "3 convolution layers, 3 max-pooling layers, 2 fully
connected layers and a final 10-way layer". Read here as: three stages of
3x3 convolution + batch-norm + ReLU + 2x2 max-pooling (28 -> 14 -> 7 -> 3
pixels), then two *hidden* fully connected layers (ReLU, dropout), then the
10-way output layer that gives the logits: three ``nn.Linear`` in all.

``DigitClassifierModel`` wraps it with scikit-learn's conventions, like
``AutoencoderDetector``: ``__init__`` only stores parameters, ``fit`` returns
self, learned state ends in ``_``. It trains with Adam and cross-entropy on
the shared training loop (training.py), early-stopping on a held-out share of
the *training* set; the test set is only ever used by ``evaluate``.

A saved classifier is a folder with ``weights.safetensors`` and
``classifier.json`` (format, architecture, input shape, normalisation, class
names, training summary, package version and the SHA-256 of the weights);
loading never unpickles and refuses a folder whose parts do not match.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from sklearn.base import BaseEstimator
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
from torch import nn

from ae_anomaly import __version__
from ae_anomaly.classifier.config import ClassifierDataConfig, ClassifierTrainingConfig
from ae_anomaly.config import describe_validation_error
from ae_anomaly.data.tensors import UINT8_SCALE, to_image_tensor
from ae_anomaly.errors import UserError
from ae_anomaly.fileio import atomic_write, write_json
from ae_anomaly.nn.device import select_device
from ae_anomaly.nn.inference import batched_outputs
from ae_anomaly.nn.training import ProgressListener, TrainSettings, train

FORMAT_NAME = "ae-anomaly-classifier"
FORMAT_VERSION = 1
ARCH_NAME = "digit-cnn"
WEIGHTS_FILE = "weights.safetensors"
META_FILE = "classifier.json"
N_CLASSES = 10
# Three 2x2 poolings: an image needs at least 8 pixels a side to keep one.
MIN_SIDE = 8
# The network's default widths: convolution channels per stage, hidden dense units.
CHANNELS = (16, 32, 64)
HIDDEN = (128, 64)
DROPOUT = 0.3
# Images per forward pass when predicting; no gradients, so far more than a training batch.
PREDICT_BATCH = 1024


class DigitClassifier(nn.Module):
    """conv-pool x3, two hidden dense layers, a 10-way output layer (logits).

    ``input_shape`` is (C, H, W); any channel count and any size of at least
    8x8 works (MNIST: 1x28x28, flattened to ``channels[2] * 3 * 3`` features).
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 28, 28),
        channels: Sequence[int] = CHANNELS,
        hidden: Sequence[int] = HIDDEN,
        dropout: float = DROPOUT,
        n_classes: int = N_CLASSES,
    ) -> None:
        super().__init__()
        c, h, w = _checked_shape(input_shape)
        channels = _positive_ints("channels", channels, 3)
        hidden = _positive_ints("hidden", hidden, 2)
        if not 0 <= dropout < 1:
            raise UserError(f"the classifier's dropout must lie in [0, 1), got {dropout!r}")
        stages: list[nn.Module] = []
        for c_in, c_out in zip((c, *channels[:2]), channels, strict=True):
            stages += [
                # No bias: the batch-norm right after it has its own shift.
                nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
        self.features = nn.Sequential(*stages)
        flat = channels[2] * (h // MIN_SIDE) * (w // MIN_SIDE)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat, hidden[0]),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden[0], hidden[1]),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden[1], n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # type: ignore[no-any-return]


def _checked_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(d, int) and d > 0 for d in shape):
        raise UserError(f"the classifier needs an input shape (C, H, W), got {shape}")
    c, h, w = shape
    if h < MIN_SIDE or w < MIN_SIDE:
        raise UserError(
            f"the classifier needs images of at least {MIN_SIDE}x{MIN_SIDE} pixels "
            f"(three 2x2 poolings), got {h}x{w}"
        )
    return c, h, w


def _positive_ints(name: str, values: Sequence[int], count: int) -> list[int]:
    items = list(values)
    if len(items) != count or not all(isinstance(v, int) and v > 0 for v in items):
        raise UserError(f"the classifier's {name} must be {count} positive integers, got {items}")
    return items


def random_shift(images: torch.Tensor, generator: torch.Generator, max_shift: int) -> torch.Tensor:
    """Shift every image by its own whole number of pixels in [-max_shift, max_shift], x and y.

    Vacated pixels are 0 (background). Two gathers from a zero-padded copy:
    exact (no resampling blur) and one operation for the whole batch.
    """
    n, c, h, w = images.shape
    shifts = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=generator)
    shifts = shifts.to(images.device)
    padded = nn.functional.pad(images, (max_shift,) * 4)
    rows = torch.arange(h, device=images.device) + max_shift - shifts[:, 1:2]  # (n, h)
    cols = torch.arange(w, device=images.device) + max_shift - shifts[:, 0:1]  # (n, w)
    picked_rows = padded.gather(2, rows[:, None, :, None].expand(n, c, h, w + 2 * max_shift))
    return picked_rows.gather(3, cols[:, None, None, :].expand(n, c, h, w))


class DigitClassifierModel(BaseEstimator):  # type: ignore[misc]
    """A trained ``DigitClassifier`` with fit / predict / predict_proba / evaluate / save / load.

    Fitted attributes: ``model_`` (the network, in eval mode after fit),
    ``input_shape_`` (C, H, W), ``device_``, ``classes_`` (0..9),
    ``class_names_``, ``dataset_`` (name of the data it was trained on, or
    None), ``history_`` (per-epoch train / validation cross-entropy),
    ``best_epoch_`` (whose weights were kept), ``n_train_``, ``n_val_``,
    ``val_accuracy_`` and ``train_seconds_``.
    """

    def __init__(
        self,
        epochs: int = 8,
        batch_size: int = 128,
        learning_rate: float = 2e-3,
        lr_decay: float = 0.7,
        patience: int = 3,
        max_shift: int = 2,
        val_fraction: float = 0.1,
        channels: Sequence[int] = CHANNELS,
        hidden: Sequence[int] = HIDDEN,
        dropout: float = DROPOUT,
        device: str = "auto",
        seed: int = 0,
    ) -> None:
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.lr_decay = lr_decay
        self.patience = patience
        self.max_shift = max_shift
        self.val_fraction = val_fraction
        self.channels = channels
        self.hidden = hidden
        self.dropout = dropout
        self.device = device
        self.seed = seed

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
        listener: ProgressListener | None = None,
    ) -> DigitClassifierModel:
        """Train on images ``X`` with labels ``y`` (0..9); early-stop on ``X_val``, ``y_val``.

        Without a validation set, a random ``val_fraction`` of ``X`` is held
        out. ``class_names`` and ``dataset`` are only recorded (and saved).
        """
        training = self._checked_training()
        images = to_image_tensor(X)
        labels = _to_labels(y, len(images))
        if (X_val is None) != (y_val is None):
            raise UserError("give both X_val and y_val, or neither")
        if X_val is None:
            images, labels, val, val_labels = self._hold_out(images, labels)
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
        max_shift = self.max_shift

        def shift(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
            return random_shift(batch, generator, max_shift)

        started = time.perf_counter()
        # The seed fixes the initial weights and the dropout masks; fork_rng
        # keeps the caller's global random state untouched.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            network = _placed(self._network(self.input_shape_), self.device_)
            progress = train(
                network,
                images.to(self.device_),
                val.to(self.device_),
                TrainSettings(**training, seed=self.seed),
                listener=listener,
                train_targets=labels.to(self.device_),
                val_targets=val_labels.to(self.device_),
                loss_fn=nn.functional.cross_entropy,
                augment=shift if max_shift > 0 else None,
            )
        # Set only now: a fit that fails half-way leaves no half-trained "fitted" model.
        self.model_ = network.eval()
        self.train_seconds_ = time.perf_counter() - started
        self.history_ = [asdict(r) for r in progress.history]
        self.best_epoch_ = progress.best_epoch
        self.n_train_, self.n_val_ = len(images), len(val)
        self.classes_ = np.arange(N_CLASSES)
        self.class_names_ = names
        self.dataset_ = dataset
        self.val_accuracy_ = float(np.mean(self.predict(val) == val_labels.numpy()))
        return self

    def _checked_training(self) -> dict[str, Any]:
        """Validate the parameters with the config file's rules; return the loop's settings."""
        try:
            ClassifierDataConfig(val_fraction=self.val_fraction)
            config = ClassifierTrainingConfig(
                epochs=self.epochs,
                batch_size=self.batch_size,
                learning_rate=self.learning_rate,
                lr_decay=self.lr_decay,
                patience=self.patience,
                max_shift=self.max_shift,
            )
        except ValidationError as exc:
            raise UserError(
                f"invalid classifier parameter: {describe_validation_error(exc)}"
            ) from None
        settings = config.model_dump()
        del settings["max_shift"]  # an augmentation, not a setting of the loop
        return settings

    def _network(self, input_shape: Sequence[int]) -> DigitClassifier:
        return DigitClassifier(input_shape, self.channels, self.hidden, self.dropout)

    def _hold_out(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(self.seed)
        order = torch.randperm(len(images), generator=generator)
        n_val = max(1, round(len(images) * self.val_fraction))
        if n_val >= len(images):
            raise UserError("need at least two images to train and validate")
        train_idx, val_idx = order[n_val:], order[:n_val]
        return images[train_idx], labels[train_idx], images[val_idx], labels[val_idx]

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
        folder = Path(directory)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(
                f"cannot create classifier folder {folder}: {exc.strerror or exc}"
            ) from None
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        atomic_write(folder / WEIGHTS_FILE, lambda tmp: save_file(state, str(tmp)))
        # The JSON is written last and names the weights' digest: a folder whose
        # weights were swapped or rewritten afterwards is refused on load.
        write_json(folder / META_FILE, self._metadata(_sha256(folder / WEIGHTS_FILE)))
        return folder

    def _metadata(self, weights_sha256: str) -> dict[str, Any]:
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
            "weights_sha256": weights_sha256,
        }

    @classmethod
    def load(cls, directory: str | Path, device: str = "auto") -> DigitClassifierModel:
        """Load a classifier written by ``save``; its predictions match the saved one's."""
        folder = Path(directory)
        if not folder.is_dir():
            raise UserError(f"classifier folder {folder} does not exist")
        meta_path, weights_path = folder / META_FILE, folder / WEIGHTS_FILE
        meta = _read_metadata(meta_path)
        try:
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
            expected_digest = str(meta["weights_sha256"])
            if len(classifier.class_names_) != N_CLASSES:
                raise ValueError(f"{len(classifier.class_names_)} class names")
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{meta_path} is missing or has a bad field: {exc}") from None
        network = classifier._network(classifier.input_shape_)
        if not weights_path.is_file():
            raise UserError(f"classifier folder {folder} has no {WEIGHTS_FILE}")
        if _sha256(weights_path) != expected_digest:
            raise UserError(
                f"{weights_path} does not match {META_FILE} (changed after saving?); "
                "save the classifier again"
            )
        try:
            network.load_state_dict(load_file(str(weights_path)))
        except (SafetensorError, OSError, RuntimeError) as exc:
            raise UserError(f"cannot load weights from {weights_path}: {_one_line(exc)}") from None
        classifier.device_ = select_device(device)
        classifier.model_ = _placed(network, classifier.device_)
        classifier.model_.eval()
        classifier.classes_ = np.arange(N_CLASSES)
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


def _placed(network: nn.Module, device: torch.device) -> nn.Module:
    """The network on ``device`` in channels_last memory format (faster convolutions on CPU)."""
    network = network.to(device)
    return network.to(memory_format=torch.channels_last)  # type: ignore[call-overload,no-any-return]


def _sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None


def _read_metadata(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path.parent} holds no {path.name}; is it a saved classifier?") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read classifier file {path}: {_one_line(exc)}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise UserError(f"{path} is not an ae-anomaly classifier file")
    if meta.get("format_version") != FORMAT_VERSION:
        raise UserError(
            f"{path} has classifier format version {meta.get('format_version')}, "
            f"this ae-anomaly ({__version__}) reads version {FORMAT_VERSION}"
        )
    return meta


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())
