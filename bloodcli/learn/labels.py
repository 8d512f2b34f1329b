"""Class labels: encoding for estimators, decoding of probabilities, and aligning another dataset's names.

A test set from another lab may spell classes differently ("NEUTROPHIL", "seg") or hold classes the
model never saw. :func:`align_labels` maps the names; :func:`known_rows` says which samples can be
scored. Every path that scores a model on another dataset (``evaluate``, ``evaluate --test``,
``compare --test``) leaves samples of unknown classes out of the metrics and reports how many.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from bloodcli.errors import DatasetError
from bloodcli.settings import parse_pairs


def encode_labels(labels, classes: Sequence[str]) -> np.ndarray:
    """Integer targets: each label's position in ``classes``."""
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[label] for label in labels], dtype=np.int64)


def class_probabilities(estimator, values: np.ndarray, n_classes: int) -> np.ndarray:
    """Probabilities for all ``n_classes`` encoded classes, zero for any the estimator never saw."""
    probabilities = np.zeros((len(values), n_classes))
    probabilities[:, estimator.classes_] = estimator.predict_proba(values)
    return probabilities


def most_likely(probabilities: np.ndarray, classes) -> np.ndarray:
    """The class of highest probability in each row (``classes`` in column order)."""
    return np.asarray(classes, dtype=object)[probabilities.argmax(axis=1)]


def align_labels(labels, classes: Sequence[str], label_map: Mapping[str, str] | None = None) -> np.ndarray:
    """Map another dataset's label names onto a model's classes.

    An explicit ``label_map`` (dataset label -> model class) applies first; then labels that
    match a class ignoring case and surrounding space take that class's spelling.
    """
    by_folded_name = {c.strip().casefold(): c for c in classes}
    label_map = dict(label_map or {})

    def align(label: str) -> str:
        label = label_map.get(label, label)
        return by_folded_name.get(str(label).strip().casefold(), label)

    return np.array([align(label) for label in labels], dtype=object)


def known_rows(source, labels: np.ndarray, classes: Sequence[str]) -> tuple[np.ndarray, dict[str, int]]:
    """Which aligned ``labels`` are model ``classes``, and the count of each other label.

    Raises
    ------
    DatasetError
        When no sample has a model class: nothing could be scored.
    """
    known = np.isin(labels, list(classes))
    if not known.any():
        raise DatasetError(f"{source}: no sample has a class of the model ({', '.join(classes)}); see --label-map")
    return known, dict(sorted(Counter(labels[~known]).items()))


def parse_label_map(spec: str | None) -> dict[str, str]:
    """Parse ``"NEUTROPHIL=neutrophil,seg=neutrophil"`` into a dictionary."""
    return parse_pairs(spec, "--label-map", "DATASET_LABEL=MODEL_CLASS[,...]")
