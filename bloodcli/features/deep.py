"""Deep features: global-average-pooled embeddings of Keras ImageNet backbones.

Each backbone is one :class:`DeepExtractor` subclass built from the :data:`BACKBONES` table.
TensorFlow is imported only when a model is first built, so importing this module (and the
worker processes of classical extraction) stays light. A model is built once per process and
per setting, then reused for every batch.

Weights are ``"imagenet"`` (downloaded by Keras to ``~/.keras/models`` on first use), a local
``.h5`` file (for offline machines; its SHA-256 becomes part of the feature settings, so two
files never share cache entries), or ``"none"`` (seeded random initialisation, for plumbing).

Examples
--------
>>> from bloodcli.features import build_extractors
>>> build_extractors("mobilenetv2", {"mobilenetv2": {"alpha": 0.35, "weights": "w.h5"}})  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np

from bloodcli.errors import ResourceUnavailableError, UsageError
from bloodcli.features.base import FeatureExtractor
from bloodcli.features.weights_file import make_divisible, weights_alpha
from bloodcli.io.files import sha256_of

logger = logging.getLogger("bloodcli")

DEVICES = ("auto", "cpu", "gpu")
RANDOM_SEED = 0


@dataclass(frozen=True)
class Backbone:
    """How to build one Keras application and how wide its pooled output is."""

    constructor: str  # attribute of keras.applications
    module: str  # keras.applications submodule holding its preprocess_input
    width: int  # pooled embedding width at alpha=1
    has_alpha: bool = False
    description: str = ""


BACKBONES: dict[str, Backbone] = {
    "resnet50": Backbone("ResNet50", "resnet50", 2048, description="ResNet50 ImageNet embedding (2048-d)"),
    "mobilenetv2": Backbone("MobileNetV2", "mobilenet_v2", 1280, True, "MobileNetV2 embedding (1280-d; alpha>1 widens)"),
    "mobilenet": Backbone("MobileNet", "mobilenet", 1024, True, "MobileNet embedding (1024*alpha-d)"),
    "vgg16": Backbone("VGG16", "vgg16", 512, description="VGG16 ImageNet embedding (512-d)"),
    "vgg19": Backbone("VGG19", "vgg19", 512, description="VGG19 ImageNet embedding (512-d)"),
    "efficientnetb0": Backbone("EfficientNetB0", "efficientnet", 1280, description="EfficientNetB0 embedding (1280-d)"),
}


class DeepExtractor(FeatureExtractor):
    """Pooled embedding of a Keras backbone; subclasses only name a :data:`BACKBONES` entry.

    Parameters
    ----------
    weights : str
        ``"imagenet"``, ``"none"`` (seeded random init) or a path to a no-top ``.h5`` file.
    weights_sha256 : str
        SHA-256 of the weights file; filled in from the file, checked when given.
    input_size : int
        Images are resized to ``input_size`` x ``input_size`` pixels.
    alpha : float
        Width multiplier (MobileNet and MobileNetV2 only).
    """

    batched = True
    version = "1"
    defaults: ClassVar[dict[str, Any]] = {"weights": "imagenet", "weights_sha256": "", "input_size": 224}
    derived_params = ("weights_sha256",)

    @property
    def backbone(self) -> Backbone:
        return BACKBONES[self.name]

    def validate(self) -> None:
        size = self.params["input_size"]
        if size < 32:
            raise UsageError(f"{self.name}.input_size must be at least 32 pixels, got {size}")
        if self.backbone.has_alpha and self.params["alpha"] <= 0:
            raise UsageError(f"{self.name}.alpha must be > 0, got {self.params['alpha']}")
        weights = str(self.params["weights"]).strip()
        if weights.lower() in ("imagenet", "none"):
            self.params.update(weights=weights.lower(), weights_sha256="")

    def check_resources(self) -> None:
        weights = self.params["weights"]
        if weights in ("imagenet", "none"):
            return
        path = Path(weights).expanduser().resolve()
        digest = file_sha256(path)
        expected = self.params["weights_sha256"]
        if expected and expected != digest:
            raise ResourceUnavailableError(
                f"weights file {path} (sha256 {digest[:12]}…) is not the one these features were computed with "
                f"(sha256 {expected[:12]}…); pass the original file with --weights PATH.h5"
            )
        self.params.update(weights=str(path), weights_sha256=digest)
        if self.backbone.has_alpha:
            self._take_alpha_from(path)

    def _take_alpha_from(self, path: Path) -> None:
        """Use the weights file's width multiplier unless another was asked for (1.0 is the default)."""
        alpha, asked = weights_alpha(path, self.name), self.params["alpha"]
        if alpha is None or alpha == asked:
            return
        if asked != 1.0:
            raise UsageError(f"{path} holds {self.name} weights of alpha {alpha}, but {self.name}.alpha={asked} was asked")
        logger.info(f"{self.name}: alpha {alpha}, read from the weights file")
        self.params["alpha"] = alpha

    def feature_names(self) -> list[str]:
        return [f"{self.name}_{i}" for i in range(self.width)]

    @property
    def width(self) -> int:
        """Embedding width, known without building the model (cached rows need no TensorFlow)."""
        alpha = self.params.get("alpha", 1.0)
        if self.name == "mobilenet":
            return int(self.backbone.width * alpha)
        if self.name == "mobilenetv2" and alpha > 1.0:
            return make_divisible(self.backbone.width * alpha, 8)
        return self.backbone.width

    def prepare(self, image: np.ndarray) -> np.ndarray:
        size = self.params["input_size"]
        # Area averaging when shrinking avoids aliasing; it costs little next to the CNN.
        shrinking = image.shape[0] * image.shape[1] > size * size
        return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)

    def compute_batch(self, images: list[np.ndarray]) -> np.ndarray:
        embed = embedding_function(self)  # first: it imports TensorFlow with its native logs caught
        outputs = embed(np.stack(images))
        return np.asarray(outputs, dtype=np.float32).reshape(len(images), -1)

    def keras_model(self):
        """The Keras backbone (pooled, no top) for these parameters, built once per process."""
        return _build(self)[0]


_DIGESTS: dict[tuple, str] = {}


def file_sha256(path: Path) -> str:
    """SHA-256 of a weights file, memoised by path, size and modification time."""
    try:
        stat = path.stat()
    except OSError:
        raise ResourceUnavailableError(f"weights file {path} not found; pass an existing file with --weights PATH.h5") from None
    if not path.is_file():
        raise ResourceUnavailableError(f"weights path {path} is not a file; pass a .h5 file with --weights PATH.h5")
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = sha256_of(path)
    return _DIGESTS[key]


# --- device and TensorFlow runtime ------------------------------------------------------------

_runtime = {"device": "auto", "configured": None}
_lock = threading.Lock()


def use_device(device: str) -> None:
    """Choose where deep extractors run: ``"cpu"``, ``"gpu"`` or ``"auto"`` (GPU when visible).

    Takes effect when the first model is built; TensorFlow cannot move to another device later.
    """
    device = (device or "auto").lower()
    if device not in DEVICES:
        raise UsageError(f"unknown device {device!r} (choose from {', '.join(DEVICES)})")
    configured = _runtime["configured"]
    if configured is not None and device != "auto" and device != configured:
        raise UsageError(f"TensorFlow already runs on {configured} in this process; cannot switch to {device}")
    _runtime["device"] = device


def load_tensorflow():
    """TensorFlow, imported once with its native start-up logs sent to the debug log and the device chosen and logged."""
    return _configure_tensorflow()


def on_gpu() -> bool:
    """Whether TensorFlow was set up on a GPU (False before it was set up)."""
    return _runtime["configured"] == "gpu"


def _configure_tensorflow():
    """Import TensorFlow once, hide or check GPUs as requested, and log the device used."""
    if _runtime["configured"] is not None:
        import tensorflow as tf

        return tf
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # C++ info/warnings are noise on a CLI
    with native_stderr_to_debug():
        import tensorflow as tf

        gpus = _visible_gpus(tf)
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        logger.info(f"using GPU: {details.get('device_name', gpus[0].name)}")
    else:
        logger.info("using CPU")
    _runtime["configured"] = "gpu" if gpus else "cpu"
    return tf


def _visible_gpus(tf) -> list:
    """The GPUs TensorFlow may use, as ``--device`` asks (none for cpu; an error for gpu without one)."""
    device = _runtime["device"]
    try:
        if device == "cpu":
            tf.config.set_visible_devices([], "GPU")
        gpus = tf.config.get_visible_devices("GPU")
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)  # share the GPU instead of taking all of it
    except RuntimeError:  # runtime already initialised by the caller: use it as it is
        gpus = tf.config.get_visible_devices("GPU")
    if device == "gpu" and not gpus:
        raise ResourceUnavailableError(
            "--device gpu: TensorFlow sees no GPU (install the CUDA build with: pip install 'bloodcli[gpu]')"
        )
    return gpus


# --- models -----------------------------------------------------------------------------------

_models: dict[tuple, tuple] = {}


def _model_key(extractor: DeepExtractor) -> tuple:
    return (extractor.name, *sorted(extractor.params.items()))


def embedding_function(extractor: DeepExtractor):
    """A compiled function from a uint8 batch (n, s, s, 3) to pooled embeddings (n, d)."""
    return _build(extractor)[1]


def _build(extractor: DeepExtractor) -> tuple:
    key = _model_key(extractor)
    with _lock:
        if key not in _models:
            _models[key] = _build_model(extractor)
        return _models[key]


@contextlib.contextmanager
def native_stderr_to_debug():
    """Pass what native code writes to file descriptor 2 meanwhile on to the debug log.

    TensorFlow's C++ runtime logs (oneDNN, CUDA probing, "failed call to cuInit") through absl
    before its log settings apply, so ``TF_CPP_MIN_LOG_LEVEL`` cannot silence them; stderr is for
    bloodcli's own lines, and ``--debug`` still shows them.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            for line in sink.read().decode(errors="replace").splitlines():
                logger.debug(line)


def new_backbone(extractor: DeepExtractor):
    """A fresh pooled Keras backbone (no top) with the extractor's weights, never cached: fine-tuning changes it."""
    _configure_tensorflow()
    import keras

    backbone, params = extractor.backbone, extractor.params
    size = params["input_size"]
    kwargs = {"input_shape": (size, size, 3), "include_top": False, "pooling": "avg"}
    if backbone.has_alpha:
        kwargs["alpha"] = params["alpha"]
    return _instantiate(extractor, getattr(keras.applications, backbone.constructor), kwargs, keras)


def preprocess_function(name: str):
    """The backbone's own ``preprocess_input`` (float RGB 0-255 in, what its ImageNet weights expect out)."""
    import keras

    return getattr(keras.applications, BACKBONES[name].module).preprocess_input


def _build_model(extractor: DeepExtractor) -> tuple:
    tf = _configure_tensorflow()
    size = extractor.params["input_size"]
    model = new_backbone(extractor)
    preprocess = preprocess_function(extractor.name)

    # A fixed signature with a free batch dimension: one trace for every batch, the last included.
    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.uint8)])
    def embed(images):
        return model(preprocess(tf.cast(images, tf.float32)), training=False)

    with native_stderr_to_debug():  # the first call compiles, and the runtime logs again
        embed(np.zeros((1, size, size, 3), np.uint8))
    return model, embed


def _instantiate(extractor: DeepExtractor, constructor, kwargs: dict, keras):
    weights = extractor.params["weights"]
    settings = ", ".join(f"{k}={v}" for k, v in extractor.params.items() if k not in ("weights", "weights_sha256"))
    try:
        if weights == "imagenet":
            logger.info(f"{extractor.name}: loading ImageNet weights (downloaded once into ~/.keras/models)")
            with contextlib.redirect_stdout(io.StringIO()):  # keras prints its download progress on stdout, for results
                return constructor(weights="imagenet", **kwargs)
        if weights == "none":
            return _seeded(lambda: constructor(weights=None, **kwargs), keras)
        model = constructor(weights=None, **kwargs)
    except ValueError as exc:  # unsupported alpha/size for these weights
        raise UsageError(f"{extractor.name} ({settings}): {_first_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - keras reports a failed download as a bare Exception
        raise ResourceUnavailableError(
            f"cannot get ImageNet weights for {extractor.name} ({_first_line(exc)}); "
            f"on an offline machine pass a local no-top weights file with --weights PATH.h5{_shipped_weights_hint()}"
        ) from None
    try:
        model.load_weights(weights)
    except Exception as exc:  # noqa: BLE001 - h5py and keras raise many types for a mismatched file
        raise UsageError(
            f"cannot load {weights} into {extractor.name} ({settings}): {_first_line(exc)} "
            f"(is it a no-top file for this backbone and alpha?)"
        ) from None
    return model


def _seeded(build, keras):
    """Build with every random generator seeded, restoring Python's and NumPy's global state."""
    import random

    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        keras.utils.set_random_seed(RANDOM_SEED)
        return build()
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _shipped_weights_hint() -> str:
    """Where the weights shipped with bloodcli's sample data are, when this installation has them."""
    folder = Path(__file__).resolve().parents[2] / "sample_data" / "weights"
    files = sorted(folder.glob("*.h5")) if folder.is_dir() else []
    return f" (this installation has {', '.join(str(f) for f in files)})" if files else ""


def clear_models() -> None:
    """Forget built models (tests use it to check that seeded builds are reproducible)."""
    with _lock:
        _models.clear()


# --- options ----------------------------------------------------------------------------------


def weights_options(names, options: dict[str, dict] | None, weights: str) -> dict[str, dict]:
    """``options`` with ``weights`` set for every deep extractor among ``names``."""
    deep = [name for name in names if name in BACKBONES]
    if not deep:
        raise UsageError(f"--weights applies to deep feature extractors ({', '.join(BACKBONES)}); none is selected")
    merged = {name: dict(values) for name, values in (options or {}).items()}
    for name in deep:
        merged.setdefault(name, {})["weights"] = weights
    return merged


def override_weights(extractor_specs, weights: str) -> tuple[dict, ...]:
    """Extractor specs (from a model's settings) with another weights path, keeping the checksum.

    The recorded SHA-256 is kept so the new file must hold the very weights the model was trained on.
    """
    specs = tuple(dict(spec, params=dict(spec.get("params", {}))) for spec in extractor_specs)
    deep = [spec for spec in specs if spec["name"] in BACKBONES]
    if not deep:
        raise UsageError("--weights given, but this model uses no deep feature extractor")
    for spec in deep:
        spec["params"]["weights"] = weights
    return specs


_ALPHA_DEFAULTS = {**DeepExtractor.defaults, "alpha": 1.0}


def _backbone_extractor(name: str, class_name: str) -> type[DeepExtractor]:
    """The :class:`DeepExtractor` subclass of one :data:`BACKBONES` entry (with ``alpha`` when it has one)."""
    backbone = BACKBONES[name]
    defaults = _ALPHA_DEFAULTS if backbone.has_alpha else DeepExtractor.defaults
    namespace = {"name": name, "description": backbone.description, "defaults": defaults,
                 "__module__": __name__, "__qualname__": class_name}  # fmt: skip
    return type(class_name, (DeepExtractor,), namespace)


ResNet50Extractor = _backbone_extractor("resnet50", "ResNet50Extractor")
MobileNetV2Extractor = _backbone_extractor("mobilenetv2", "MobileNetV2Extractor")
MobileNetExtractor = _backbone_extractor("mobilenet", "MobileNetExtractor")
VGG16Extractor = _backbone_extractor("vgg16", "VGG16Extractor")
VGG19Extractor = _backbone_extractor("vgg19", "VGG19Extractor")
EfficientNetB0Extractor = _backbone_extractor("efficientnetb0", "EfficientNetB0Extractor")
