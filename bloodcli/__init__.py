"""bloodcli: classify blood cells in microscope images.

The package is a library first; :mod:`bloodcli.cli` is a thin command-line layer over it.

Modules
-------
datasets       folder-per-class, CSV manifest, Pascal VOC and file/glob inputs
imaging        robust image decoding (RGB/RGBA/grey/16-bit) and atomic file writes
preprocessing  resize, blur, CLAHE, grayscale, recorded with the features
features       registry of feature extractors behind one extraction facade
cache          fingerprinted joblib feature cache
models         registry of classifiers, safe model files
evaluation     stratified and group-aware splits, cross-validation
metrics        classification metrics
reports        tables, JSON and plots
"""

__version__ = "0.1.0"
