"""Stage 1, input and output: datasets (class folders, CSV manifests, Pascal VOC, files), image decoding, atomic writes."""
