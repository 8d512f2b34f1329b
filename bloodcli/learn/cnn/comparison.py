"""Fine-tuned CNNs in ``compare``: scored on the very folds of the feature x classifier pairs, and fused.

For each backbone, each split's network is fine-tuned on that split's training part only and scores
its test part, so its per-fold scores pair with every other configuration's. The same network's
pooled embedding of the split's images (training and test) is then concatenated with each
classical feature set and a classical classifier is fitted on the training part: a fused
configuration that never saw a test image either. Each configuration carries the network's
training cost (seconds per epoch, per image and epoch).
"""

from __future__ import annotations

import numpy as np

from bloodcli.errors import DatasetError
from bloodcli.features import feature_set_kind
from bloodcli.imaging.preprocessing import Preprocessing
from bloodcli.io.datasets import Dataset
from bloodcli.learn.classifiers import fit_classifier
from bloodcli.learn.cnn.evaluation import pooled_result, training_note, validate_network
from bloodcli.learn.cnn.images import ImageSet
from bloodcli.learn.cnn.settings import CNNSettings
from bloodcli.learn.cnn.training import embed
from bloodcli.learn.compare import ConfigResult, classical_vs_deep, test_train_ratio
from bloodcli.learn.labels import class_probabilities
from bloodcli.learn.splits import Split
from bloodcli.learn.validation import fold_rows
from bloodcli.pipeline.union import columns_of

FINE_TUNED = "fine-tuned"


def network_configs(data: ImageSet, splits: list[Split], settings: CNNSettings, fused: dict[str, object], models: list[str],
                    seed: int = 0, on_epoch=None, extraction: dict[str, tuple] | None = None) -> list[ConfigResult]:  # fmt: skip
    """The CNN's configuration and one fused configuration per (classical set, model) on ``splits``.

    ``fused`` maps a classical set's name to its feature values: an array (rows as ``data``'s) or, when
    references are refitted per training part, one array per split. ``extraction``: each classical set's
    extraction cost ``(ms per image, computed, cached)``, which its fused configurations report as theirs.
    """
    classes = sorted(set(data.labels))
    labels = data.labels
    name = f"{settings.backbone} ({FINE_TUNED})"
    fused_probabilities: dict[tuple[str, str], list[np.ndarray]] = {(s, m): [] for s in fused for m in models}

    def fuse(number, fitted, train, test):
        embedding = embed(fitted.backbone, data.images, settings)
        for set_name, values in fused.items():
            classical = values[number] if isinstance(values, list) else values
            joined = np.hstack([classical, embedding])
            for model in models:
                estimator = fit_classifier(model, joined[train], labels[train], classes, seed)
                fused_probabilities[(set_name, model)].append(class_probabilities(estimator, joined[test], len(classes)))

    result, costs = validate_network(data, splits, settings, "", on_epoch, fuse if fused else None)
    cost = _mean_cost(costs)
    configs = [ConfigResult(name, FINE_TUNED, "cnn", result.fold_metrics, result, None, len(data), 0, cost)]
    for (set_name, model), probabilities in fused_probabilities.items():
        evaluation = pooled_result(labels, splits, probabilities, classes, "", result.fit_ms_per_row)
        extracted = (extraction or {}).get(set_name, (None, len(data), 0))
        configs.append(ConfigResult(f"{set_name}+{name}", "fused", model, evaluation.fold_metrics, evaluation, *extracted, cost))
    return configs


def _mean_cost(costs: list[dict]) -> dict:
    """Training cost averaged over the splits' networks."""
    return {key: float(np.mean([c[key] for c in costs])) for key in ("seconds_per_epoch", "seconds_per_image", "train_seconds", "epochs")}


def add_networks(result, table, spans: dict, sets: list[list[str]], models: list[str], settings_list: list[CNNSettings],
                 preprocessing: Preprocessing, on_epoch=None) -> None:  # fmt: skip
    """Add each fine-tuned network (and its fusions with the classical sets) to a CV ``result`` of ``table``, then
    redo its paired test (best fine-tuned vs best classical)."""
    rows = fold_rows(table, result.splits)
    n = len(table)
    fused = {}
    for names in sets:
        if feature_set_kind(names) == "classical":
            columns = columns_of(spans, names)
            fused["+".join(names)] = [r.values[:n, columns] for r in rows] if isinstance(rows, list) else rows.values[:n, columns]
    extraction = {c.features: (c.extract_ms_per_sample, c.extract_computed, c.extract_cached)
                  for c in result.configs if c.kind == "classical"}  # fmt: skip
    for settings in settings_list:
        settings = settings.framed_for(table.samples)  # measured on every image, as train does (no labels)
        data = ImageSet.load(Dataset(table.samples, result.source, "files"), settings.image_size, preprocessing,
                             framing=settings.framing_ratio, skip_errors=True)  # fmt: skip
        if len(data) != n:
            raise DatasetError(f"{n - len(data)} image(s) could be featurized but not read for the network: {data.failures[:1]}")
        result.configs.extend(network_configs(data, result.splits, settings, fused, models, result.seed, on_epoch, extraction))
        result.notes += f"; {training_note(settings)}"  # the report names the recipe its scores came from
    result.comparison = classical_vs_deep(result, test_train_ratio(result.splits))
