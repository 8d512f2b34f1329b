"""On-the-fly augmentation of training batches in TensorFlow, with the vocabulary of ``--augment``.

Each image of each epoch gets fresh draws, from stateless random ops keyed on the seed and the
image's position in the stream, so a run is reproducible. The steps and their order follow
:func:`bloodcli.imaging.augmentation.augment`: rotation by 90°, mirroring, rescaling (zoom in or
out about the centre, edges replicated), HED stain jitter (Tellez et al.), brightness and
contrast, then Gaussian blur.
"""

from __future__ import annotations

import numpy as np

from bloodcli.imaging.augmentation import Augmentation

_BLUR_RADIUS = 3  # kernel of 7 taps: enough for sigma <= ~1.5 px


def augmenter(augmentation: Augmentation, seed: int):
    """A function ``(image uint8 (s, s, 3), index int64) -> float32 image 0-255`` for ``tf.data``'s map."""
    import tensorflow as tf
    from skimage.color import hed_from_rgb, rgb_from_hed

    a = augmentation
    to_hed = tf.constant(hed_from_rgb, tf.float32)
    from_hed = tf.constant(rgb_from_hed, tf.float32)

    def draw(index, step, shape=(), low=0.0, high=1.0):
        return tf.random.stateless_uniform(shape, tf.stack([tf.cast(seed, tf.int64) * 7919 + step, index]), low, high)

    def apply(image, index):
        index = tf.cast(index, tf.int64)
        image = tf.cast(image, tf.float32)
        size = tf.shape(image)[0]
        if a.rotate:
            image = tf.image.rot90(image, tf.cast(draw(index, 1) * 4, tf.int32) % 4)
        if a.flip:
            image = tf.cond(draw(index, 2) < 0.5, lambda: tf.image.flip_left_right(image), lambda: image)
        if a.scale:
            image = _rescale(image, draw(index, 3, (), 1 - a.scale, 1 + a.scale), size)
        if a.hed:
            density = -tf.math.log((image + 1.0) / 256.0)
            stains = tf.reshape(density, (-1, 3)) @ to_hed
            stains = stains * draw(index, 4, (3,), 1 - a.hed, 1 + a.hed) + draw(index, 5, (3,), -a.hed, a.hed)
            image = tf.reshape(256.0 * tf.exp(-(stains @ from_hed)) - 1.0, tf.shape(image))
        if a.brightness or a.contrast:
            mean = tf.reduce_mean(image)
            contrast = draw(index, 6, (), 1 - a.contrast, 1 + a.contrast)
            image = (image - mean) * contrast + mean + 255.0 * draw(index, 7, (), -a.brightness, a.brightness)
        image = tf.clip_by_value(image, 0.0, 255.0)
        if a.blur:
            image = _blur(image, tf.maximum(draw(index, 8, (), 0.0, a.blur), 1e-3))
        return image

    return apply


def _rescale(image, factor, size):
    """Zoom by ``factor`` about the centre, keeping the size (edge pixels fill what a zoom-out uncovers)."""
    import tensorflow as tf

    scaled = tf.cast(tf.round(tf.cast(size, tf.float32) * factor), tf.int32)
    resized = tf.image.resize(image, tf.stack([scaled, scaled]), antialias=True)
    pad = tf.maximum(size - scaled, 0)
    resized = tf.pad(resized, [[pad // 2, pad - pad // 2], [pad // 2, pad - pad // 2], [0, 0]], mode="SYMMETRIC")
    offset = (tf.shape(resized)[0] - size) // 2
    return tf.image.crop_to_bounding_box(resized, offset, offset, size, size)


def _blur(image, sigma):
    """Separable Gaussian blur of one image with a per-image sigma."""
    import tensorflow as tf

    taps = tf.range(-_BLUR_RADIUS, _BLUR_RADIUS + 1, dtype=tf.float32)
    kernel = tf.exp(-0.5 * tf.square(taps / sigma))
    kernel = kernel / tf.reduce_sum(kernel)
    batch = image[None]
    channels = tf.tile(tf.reshape(kernel, (-1, 1, 1, 1)), (1, 1, 3, 1))
    batch = tf.nn.depthwise_conv2d(tf.pad(batch, [[0, 0], [_BLUR_RADIUS] * 2, [0, 0], [0, 0]], "SYMMETRIC"), channels, [1] * 4, "VALID")
    channels = tf.reshape(channels, (1, -1, 3, 1))
    batch = tf.nn.depthwise_conv2d(tf.pad(batch, [[0, 0], [0, 0], [_BLUR_RADIUS] * 2, [0, 0]], "SYMMETRIC"), channels, [1] * 4, "VALID")
    return batch[0]


def augmentation_examples(images: np.ndarray, augmentation: Augmentation, seed: int = 0) -> np.ndarray:
    """Augmented versions of ``images`` (uint8), as training would draw them first (for checks and figures)."""
    apply = augmenter(augmentation, seed)
    return np.stack([np.clip(np.rint(np.asarray(apply(image, i))), 0, 255).astype(np.uint8) for i, image in enumerate(images)])
