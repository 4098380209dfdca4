"""AutoencoderDetector: fit on normal images, score, threshold, save and load.

The API follows PyOD's convention for outlier detectors, chosen because every number
this package writes (CSV, reports, ONNX, the service) has the same direction:

- ``decision_function(X)``: the anomaly score of each image, higher = more anomalous;
- ``predict(X)``: 1 for an anomaly (score above ``threshold_``), 0 for normal;
- ``fit(X, y=None)``: ``y`` is ignored (it is there so that scikit-learn's Pipeline and
  cross-validation can pass labels through); validation images go in ``validation=``.

It does not claim scikit-learn's OutlierMixin, whose ``score_samples`` is lower for
more abnormal and whose ``predict`` gives -1 / +1. Parameters are dataclass fields
(estimator/base.py): ``__init__`` only stores them, ``clone`` and ``get_params`` work.
The threshold is fitted on normal validation images the network did not train on.

With ``members`` > 1 it is an ensemble (nn/ensemble.py): that many networks trained on
the same images from different initial weights, the score the mean of theirs. A saved
detector is a folder with ``weights.safetensors`` and ``detector.json``
(detector/files.py); loading never unpickles.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ae_anomaly.data.lazy_images import LazyImages, as_lazy_images
from ae_anomaly.detector.summary import description, training_record, training_summary
from ae_anomaly.errors import UndertrainedWarning, UserError
from ae_anomaly.estimator.base import ImageEstimator, placed, seeded
from ae_anomaly.nn import distributed
from ae_anomaly.nn.callbacks import Callback, EarlyStopping, TrainState, UndertrainedCheck
from ae_anomaly.nn.checkpoint import Checkpoint
from ae_anomaly.nn.compiled import CompiledScorings, ScoredOutputs
from ae_anomaly.nn.device import select_device
from ae_anomaly.nn.ensemble import (
    MemberOutputs,
    combined,
    mean_reconstruction,
    member_seed,
    networks_of,
    scorers_of,
)
from ae_anomaly.nn.fusion import scoring_copy
from ae_anomaly.nn.inference import batched_outputs, images_per_pass, stacked
from ae_anomaly.nn.loop import Task, reconstruction_loss, train
from ae_anomaly.nn.models import has_code
from ae_anomaly.nn.patches import PatchGrid, is_texture, patch_size_for, patch_task
from ae_anomaly.nn.restoration import restoration
from ae_anomaly.nn.sizes import build_network
from ae_anomaly.params import (
    AutoencoderTraining,
    FitParams,
    ModelParams,
    ScoreParams,
    checked,
    minimum_epochs,
)
from ae_anomaly.scores.names import AUTO_SCORE, auto_score
from ae_anomaly.scores.pixel import error_map
from ae_anomaly.scores.scorer import Scorer
from ae_anomaly.scores.term import require_code, term_classes, uses_code
from ae_anomaly.scores.thresholds import parse_threshold

# Images per forward pass when scoring (fewer for large images: inference.images_per_pass).
# Measured on MNIST, one thread, with the convolutions in oneDNN's blocked layout: 1,024
# was 3-6% faster than 512 for mse, ssim+latent and the one-class score, and 256 5-15%
# slower; 2,048 was no faster.
SCORE_BATCH = 1024


@dataclass(kw_only=True, eq=False, repr=False)
class AutoencoderDetector(ModelParams, ScoreParams, AutoencoderTraining, ImageEstimator):
    """Reconstruction-error anomaly detector; its parameters are those of params.py's
    ModelParams, ScoreParams, AutoencoderTraining and FitParams.

    Fitted attributes: ``model_`` (the trained network, an nn.ensemble.Ensemble of
    them for ``members`` > 1), ``score_`` (the score fitted: ``score`` with ``auto``
    made concrete), ``patch_size_`` (None for whole images; nn/patches.py),
    ``scorer_`` (the score with whatever it fitted: code density, reference codes,
    calibration; one per member), ``input_shape_`` (C, H, W), ``device_``,
    ``history_`` and ``best_epoch_`` (per-epoch losses of the first member),
    ``member_training_`` (every member's history and best epoch),
    ``validation_scores_`` (scores of the held-out normal images) and ``threshold_``
    (fitted from them).
    """

    # Not the dataclass repr of the first parameter group, which shows only its fields.
    __repr__ = ImageEstimator.__repr__

    # -- fitting ---------------------------------------------------------------

    def fit(
        self,
        X: Any,
        y: Any = None,
        *,
        validation: Any | None = None,
        callbacks: Sequence[Callback] = (),
        checkpoint_dir: Path | None = None,
        resume: bool = False,
    ) -> AutoencoderDetector:
        """Train on normal images ``X``; fit the threshold on ``validation`` images.

        ``y`` is ignored. Without ``validation``, a random ``val_fraction`` of ``X`` is
        held out. ``callbacks`` watch (and may stop) each member's training, e.g. a
        progress bar; with ``checkpoint_dir`` every epoch is saved there, and ``resume``
        continues from what is saved.
        """
        if y is not None and np.ndim(y) > 1:
            raise UserError(
                "fit(X, y): y is ignored and must not be images; pass validation images "
                "as fit(X, validation=...)"
            )
        training = self.validate_params()
        rule = parse_threshold(self.threshold)
        # Read a batch at a time as they are stored: no float copy of the whole set.
        images = as_lazy_images(X)
        val = as_lazy_images(validation) if validation is not None else None
        if val is None:
            train_index, val_index = self.held_out(len(images), "normal images")
            images, val = images.subset(train_index), images.subset(val_index)
        if val.shape[1:] != images.shape[1:]:
            raise UserError(
                f"validation images have shape {tuple(val.shape[1:])}, "
                f"training images {tuple(images.shape[1:])}"
            )
        self.input_shape_ = tuple(int(d) for d in images.shape[1:])
        texture = self.patch == "auto" and is_texture(images)
        _, height, width = self.input_shape_
        self.patch_size_ = patch_size_for(self.patch, height, width, texture)
        self.score_ = self._resolved_score()
        self._check_enough(len(images), len(val))
        self.device_ = select_device(self.device)
        task = self.training_task(training)
        if (grid := self._grid()) is not None:
            task = patch_task(task, grid)
        images, val = images.to(self.device_), val.to(self.device_)
        check = UndertrainedCheck()
        draws = len(images) * task.repeats
        stopping = EarlyStopping(training.patience, minimum_epochs(training, draws, task.min_steps))
        standard: list[Callback] = [stopping, check]
        if checkpoint_dir is not None:
            standard.append(Checkpoint(checkpoint_dir, resume=resume))
        # In patch mode the validation loss is that of the tiles the images are scored by
        # (held as one tensor: patch mode's validation set is not read lazily).
        val_inputs = val if grid is None else grid.tiles(val[:])
        trained = [
            self._train_member(member, images, val_inputs, training, task, [*standard, *callbacks])
            for member in range(self.members)
        ]
        networks = [network for network, _ in trained]
        self.member_training_ = [training_record(state) for _, state in trained]
        self.training_warnings_ = check.messages
        for message in check.messages:
            warnings.warn(message, UndertrainedWarning, stacklevel=2)
        self.history_ = self.member_training_[0]["history"]
        self.best_epoch_ = self.member_training_[0]["best_epoch"]
        fitted = [self._fit_scorer(net, member, images, val) for member, net in enumerate(networks)]
        self.model_, self.scorer_ = combined(networks, [scorer for scorer, _ in fitted])
        # The calibration's term values of the validation images give their scores too.
        val_scores = torch.stack(
            [self._per_image(scorer.combine(values)) for scorer, values in fitted]
        )
        self.validation_scores_ = val_scores.mean(dim=0).double().cpu().numpy()
        self.threshold_ = rule.fit(self.validation_scores_)
        return self

    def _check_enough(self, n_train: int, n_val: int) -> None:
        """Refuse, before any training, what the score would refuse after it."""
        ranks = distributed.world_size()
        if n_val < ranks:
            raise UserError(
                f"{ranks} processes need at least {ranks} validation images, not {n_val}"
            )
        terms = term_classes(self.score_)
        if len(terms) > 1 and n_val < 2:
            raise UserError(
                f"score {self.score_!r} combines terms on the scale of the validation images, "
                f"which needs at least two of them, not {n_val}: raise val_fraction or give "
                "more images"
            )
        if any(term.needs_code for term in terms) and n_train < 2:
            raise UserError(
                f"score {self.score_!r} fits the codes of at least two training images, "
                f"not {n_train}"
            )

    def validate_params(self) -> AutoencoderTraining:
        """Check every parameter with the rules of params.py (the config file's rules);
        return the training parameters."""
        for group in (ModelParams, ScoreParams, FitParams):
            checked(group, self, "detector parameter")
        return checked(AutoencoderTraining, self, "detector parameter")

    def training_task(self, training: AutoencoderTraining) -> Task:
        """What the networks learn: to reconstruct (or restore) the training images under
        the training loss. A subclass may return another Task (augmentations, a loss of
        its own) to try a training variant without changing the loop."""
        return Task(
            loss=reconstruction_loss(training.loss),
            restore=restoration(training.restore, training.restore_angle, training.restore_share),
        )

    def _resolved_score(self) -> str:
        """The score the detector fits: ``score``, with ``auto`` made concrete (auto_score)."""
        if self.score != AUTO_SCORE:
            return self.score
        with torch.device("meta"):  # only to see whether the model has a code: no memory
            network = build_network(self.model, self.network_shape(), **(self.model_args or {}))
        return auto_score(patches=self.patch_size_ is not None, has_code=has_code(network))

    def _grid(self) -> PatchGrid | None:
        """The tiles an image is scored by in patch mode; None for whole images."""
        size = getattr(self, "patch_size_", None)  # detectors saved before patches: None
        if size is None:
            return None
        return PatchGrid(size, *self.input_shape_[1:])

    def network_shape(self) -> tuple[int, ...]:
        """(C, H, W) of what the networks take: the images, or in patch mode a patch."""
        grid = self._grid()
        if grid is None:
            return tuple(self.input_shape_)
        return (self.input_shape_[0], grid.size, grid.size)

    def _rows(self, images: Any) -> int:
        """How many rows the networks see for ``images``: one per image, or per tile."""
        grid = self._grid()
        return len(images) * (1 if grid is None else grid.tiles_per_image)

    def _per_image(self, values: torch.Tensor) -> torch.Tensor:
        """Per-image scores from the scores of what the networks saw (tiles in patch mode)."""
        grid = self._grid()
        return values if grid is None else grid.image_scores(values)

    def _train_member(
        self,
        member: int,
        images: LazyImages,
        val: LazyImages | torch.Tensor,
        training: AutoencoderTraining,
        task: Task,
        callbacks: Sequence[Callback],
    ) -> tuple[nn.Module, TrainState]:
        """Member ``member``'s network, trained on ``images``, and its training state."""
        seed = member_seed(self.seed, member)
        with seeded(seed):  # the seed fixes the initial weights
            built = build_network(self.model, self.network_shape(), **(self.model_args or {}))
        require_code(self.score_, has_code(built), self.model)
        network = placed(built, self.device_)
        state = train(
            network,
            images,
            val,
            training,
            task,
            seed=seed,
            callbacks=callbacks,
            member=member,
            members=self.members,
        )
        return network, state

    def _fit_scorer(
        self, network: nn.Module, member: int, images: LazyImages, val: LazyImages
    ) -> tuple[Scorer, torch.Tensor]:
        """``network``'s score with its terms fitted on the training images (their codes)
        and calibrated on ``val``, and the (N, T) term values of ``val`` it was calibrated on.

        The terms see training images, the calibration validation images:
        the threshold, fitted on validation scores, then sees scores of images
        that nothing was fitted on but the calibration's two numbers per term.
        """
        codes = None
        if uses_code(self.score_):
            codes = distributed.over_ranks(
                images,
                lambda part: stacked(
                    (c for _, [(_, c)] in self._batches(part, [network]) if c is not None),
                    self._rows(part),
                ),
            )
        seed = member_seed(self.seed, member)
        local = self._grid() is not None
        scorer = Scorer.fitted(self.score_, codes, seed, local).to(self.device_)
        values = distributed.over_ranks(
            val,
            lambda part: stacked(
                (scorer.term_values(x, *out[0]) for x, out in self._batches(part, [network])),
                self._rows(part),
            ),
        )
        scorer.calibrate(values)
        return scorer, values

    def training_summary(self) -> dict[str, Any]:
        """Epochs run, the best epoch, per-epoch losses and the device, for metrics.json
        (of the first member; an ensemble's summary also lists every member's)."""
        self._fitted_model()
        return training_summary(self)

    def description(self) -> dict[str, str]:
        """Model, score and what the training assumed, in words, for reports."""
        return description(self)

    # -- scoring ---------------------------------------------------------------

    def decision_function(self, X: Any) -> np.ndarray:
        """Per-image anomaly score (higher = more anomalous), float64 array of length N.

        A score that is not a finite number is an error, never a verdict (NaN is above
        no threshold, so it would read as "normal")."""
        scorers = scorers_of(self._fitted_scorer())
        images = as_lazy_images(X)
        chunks = (self._per_image(s) for _, s in self._batches(images, scorers=scorers))
        scores = stacked(chunks, len(images)).double().cpu().numpy()
        broken = np.flatnonzero(~np.isfinite(scores))
        if broken.size:
            raise UserError(
                f"the detector gave {broken.size} score(s) that are not finite numbers (the "
                f"first for image {broken[0]}): its weights are broken (a training that "
                "diverged?), so it can give no verdict"
            )
        return scores

    def predict(self, X: Any) -> np.ndarray:
        """1 for an anomaly (score above the threshold), 0 for normal."""
        return (self.decision_function(X) > self._fitted_threshold()).astype(np.int64)

    def reconstruct(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """Reconstructions (N, C, H, W) in [0, 1] and per-pixel error maps (N, H, W).

        An ensemble's reconstruction is the mean of its members'.
        """
        self._fitted_model()
        recons, maps = [], []
        kind, grid = self.error_map_kind(), self._grid()
        for x, outputs in self._batches(X):
            r = mean_reconstruction(outputs)
            m = error_map(x, r, kind)
            if grid is not None:  # the tiles' reconstructions and maps, averaged
                r, m = grid.assemble(r), grid.assemble(m[:, None])[:, 0]
            recons.append(r.cpu())
            maps.append(m.cpu())
        return torch.cat(recons).numpy(), torch.cat(maps).numpy()

    def error_map_kind(self) -> str:
        """The pixel score whose map ``reconstruct`` shows: the score's first term with a
        map (mse for a score of the code alone, which has no map of its own)."""
        mapped = [term.name for term in term_classes(self.score_) if term.has_map]
        return mapped[0] if mapped else "mse"

    def compile(self) -> AutoencoderDetector:
        """Score through ``torch.compile`` from now on (nn/compiled.py): 1.01 to 1.15x
        faster on a CPU once compiled, but the first scoring compiles for 9 to 30 s.
        For a server or millions of images; the scores equal uncompiled ones to float
        rounding. Not saved with the detector. Returns the detector."""
        self._fitted_model()
        self._compiled = CompiledScorings()
        return self

    def _batches(
        self, X: Any, networks: list[nn.Module] | None = None, scorers: list[Scorer] | None = None
    ) -> Iterator[tuple[torch.Tensor, Any]]:
        """(images, one (reconstructions, codes or None) per member) batch by batch, on the
        detector's device; ``networks`` defaults to the fitted members. With ``scorers``,
        (images, their mean score) instead. In patch mode the images are the tiles of
        whole images, image by image."""
        if networks is None:
            networks = networks_of(self._fitted_model())
        images = as_lazy_images(X)
        if tuple(images.shape[1:]) != self.input_shape_:
            raise UserError(
                f"the detector was fitted on images of shape {self.input_shape_}, "
                f"got {tuple(images.shape[1:])}"
            )
        fast = [scoring_copy(network) for network in networks]  # same outputs, faster
        members = MemberOutputs(fast, with_code=uses_code(self.score_))
        runner: nn.Module = members if scorers is None else ScoredOutputs(members, scorers)
        if scorers is not None and (compiled := getattr(self, "_compiled", None)) is not None:
            runner = compiled.of(fast, runner)
        grid = self._grid()
        if grid is None:
            per_pass = images_per_pass(images.shape, SCORE_BATCH)
            yield from batched_outputs(runner, images, self.device_, per_pass)
            return
        tile = (images.shape[1], grid.size, grid.size)
        per_batch = max(1, images_per_pass((0, *tile), SCORE_BATCH) // grid.tiles_per_image)
        for start in range(0, len(images), per_batch):
            tiles = grid.tiles(images[start : start + per_batch].to(self.device_))
            yield from batched_outputs(runner, tiles, self.device_, len(tiles))

    def _fitted_model(self) -> nn.Module:
        if not hasattr(self, "model_"):
            raise UserError("this detector is not fitted yet; call fit() or load() first")
        return self.model_  # type: ignore[no-any-return]

    def _fitted_scorer(self) -> nn.Module:
        """The fitted Scorer, or an nn.ensemble.EnsembleScorer of one per member."""
        self._fitted_model()
        return self.scorer_  # type: ignore[no-any-return]

    def _fitted_threshold(self) -> float:
        self._fitted_model()
        return float(self.threshold_)

    # -- saving ----------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Write weights (safetensors) and detector.json into ``directory``."""
        from ae_anomaly.detector.files import save_detector

        self._fitted_model()
        return save_detector(self, Path(directory))

    @classmethod
    def load(cls, directory: str | Path, device: str = "auto") -> AutoencoderDetector:
        """Load a detector written by ``save``; scores match the saved one's exactly.

        Reads JSON and safetensors only, never pickle. Every field is checked,
        so that a hand-edited or foreign detector.json ends in one sentence.
        """
        from ae_anomaly.detector.files import load_detector

        return load_detector(cls, Path(directory), device)
