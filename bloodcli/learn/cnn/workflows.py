"""The CNN's train, predict and evaluate workflows, called by :mod:`bloodcli.api` for ``-m cnn``.

They mirror the feature workflows: images are read like features' (crop boxes, preprocessing),
held-out metrics come from networks fine-tuned without the test images, and the returned model
is fitted on every image. Preprocessing that fits references on images (``--stain``,
``--cell-diameter auto``) is refused: a CNN learns stain variation from HED augmentation instead.
"""

from __future__ import annotations

from collections.abc import Mapping

from bloodcli.errors import UsageError
from bloodcli.imaging.preprocessing import Preprocessing
from bloodcli.io.datasets import Dataset
from bloodcli.learn.cnn.evaluation import cross_validate_network, holdout_network, train_network
from bloodcli.learn.cnn.images import ImageSet
from bloodcli.learn.cnn.model import CNNModel
from bloodcli.learn.cnn.network import resolve_weights
from bloodcli.learn.cnn.settings import CNNSettings
from bloodcli.learn.cnn.training import EpochCallback
from bloodcli.learn.validation import EvaluationResult, ExternalTest
from bloodcli.pipeline.featurize import is_features_file, load_source
from bloodcli.pipeline.options import ExecutionOptions


def check_cnn_inputs(source, preprocessing: Preprocessing) -> None:
    """Refuse what a CNN cannot train on, before any image is read."""
    if source is not None and is_features_file(source):
        raise UsageError(f"-m cnn trains on images, but {source} is a features file")
    if preprocessing.needs_fitting:
        raise UsageError("-m cnn takes no --stain or --cell-diameter auto (it learns stain variation from HED augmentation)")


def prepare(settings: CNNSettings, options: ExecutionOptions) -> CNNSettings:
    """Settings with the weights file resolved, and TensorFlow placed on ``options.device``."""
    from bloodcli.features.deep import use_device

    use_device(options.device)
    return resolve_weights(settings)


def source_name(source) -> str:
    """How a source is named in messages and protocols (a loaded dataset by where it came from)."""
    return source.source if isinstance(source, Dataset) else str(source)


def load_training_images(source, settings: CNNSettings, preprocessing: Preprocessing,
                         options: ExecutionOptions) -> tuple[ImageSet, CNNSettings]:  # fmt: skip
    """The training images, framed as ``settings`` say, and the settings with an "auto" framing measured on them.

    The framing is a label-free median of the images' geometry (:mod:`.framing`), measured once on every
    training image: under ``--folds`` the test folds' images take part in that median, not their labels.
    """
    dataset = load_source(source, options)
    Dataset(dataset.samples, source_name(source), "").require_classes(2)
    settings = settings.framed_for(dataset.samples)
    return load_like(dataset, settings, preprocessing, options), settings


def load_like(dataset: Dataset, settings: CNNSettings, preprocessing: Preprocessing, options: ExecutionOptions) -> ImageSet:
    """``dataset``'s images as a network of ``settings`` takes them (input size, framing, preprocessing)."""
    return ImageSet.load(dataset, settings.image_size, preprocessing, framing=settings.framing_ratio,
                         skip_errors=options.skip_errors, progress=options.progress)  # fmt: skip


def train_cnn(data: ImageSet, settings: CNNSettings, preprocessing: Preprocessing = Preprocessing(), *, cv: int | None = None,
              test_size: float | None = None, on_epoch: EpochCallback | None = None) -> tuple[CNNModel, EvaluationResult | None]:  # fmt: skip
    """Fine-tune on every image of ``data``; with ``cv`` or ``test_size``, first report held-out metrics.

    Held-out networks are fine-tuned on each training part only; their cost joins the metrics.
    """
    result = None
    if cv:
        result, costs = cross_validate_network(data, settings, cv, settings.seed, on_epoch)
    elif test_size:
        result, costs = holdout_network(data, settings, test_size, settings.seed, on_epoch)
    fitted = train_network(data, sorted(set(data.labels)), settings, on_epoch)
    model = CNNModel.of(data, fitted, preprocessing)
    if result is not None:
        model.metrics = {**result.summary(), "training_cost": costs}
    return model, result


def score_saved(model: CNNModel, source, options: ExecutionOptions, label_map: Mapping[str, str] | None = None) -> tuple[dict, ImageSet]:
    """Metrics of a saved CNN on a labelled dataset (labels aligned to its classes, unknown ones counted)."""
    data = model.load_images(load_source(source, options), options)
    test = ExternalTest.of(source, data, model.classes, model.training_keys, label_map)
    return test.metrics(model.predict_proba(test.values)), data


def fit_and_score(train_source, test_source, settings: CNNSettings, preprocessing: Preprocessing, options: ExecutionOptions,
                  label_map: Mapping[str, str] | None = None, on_epoch: EpochCallback | None = None):  # fmt: skip
    """Fine-tune on every image of ``train_source``, score once on ``test_source``: ``(model, train, test, metrics)``."""
    data, settings = load_training_images(train_source, settings, preprocessing, options)
    classes = sorted(set(data.labels))
    test_data = load_like(load_source(test_source, options), settings, preprocessing, options)
    test = ExternalTest.of(source_name(test_source), test_data, classes, data.keys, label_map)
    fitted = train_network(data, classes, settings, on_epoch)
    model = CNNModel.of(data, fitted, preprocessing)
    protocol = (f"trained on {source_name(train_source)} ({len(data)} images, {settings.describe()}); "
                f"scored on the test set {source_name(test_source)}")  # fmt: skip
    return model, data, test_data, test.metrics(model.predict_proba(test.values), protocol)
