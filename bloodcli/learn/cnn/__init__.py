"""End-to-end CNN classifiers: an ImageNet backbone with a new head, fine-tuned on the training images.

Unlike deep *features* (:mod:`bloodcli.features.deep`, a frozen network feeding a classical
classifier), these networks learn from the blood cells themselves: :mod:`.settings` says what to
train, :mod:`.network` builds it from the backbone registry, :mod:`.augment` jitters images on the
fly, :mod:`.training` fits it in two phases, :mod:`.model` stores it as plain tensors and
:mod:`.evaluation` fine-tunes inside each training part only.
"""
