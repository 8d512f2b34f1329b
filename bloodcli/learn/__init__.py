"""Stage 6, learning: the classifier registry, splits, the one cross-validation loop and train-on-A-score-on-B
path, model files, statistics and the feature-set comparison."""
