"""bloodcli: classify blood cells in microscope images.

A library with a thin command line. The subpackages are the stages a cell image goes through,
each importing only from the ones below it (checked by ``tests/test_architecture.py``)::

    cli/           one module per group of commands: parse, call api, print
    api            the workflows users call from Python
    learn/         classifier registry, splits, the one cross-validation loop, model files, compare
    report/        metrics, tables, figures, HTML reports
    segmentation/  whole smears into cells, scored; the batch runner
    pipeline/      plan and execution options, extraction runner, cache, feature table
    features/      the extractor registry and the extractors
    imaging/       masks, preprocessing, stain, augmentation
    io/            datasets, image decoding, atomic writes
    settings, errors
"""

__version__ = "0.1.0"
