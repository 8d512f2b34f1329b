"""Stage 2, images: single-cell masks and morphology, preprocessing, stain and scale normalisation, augmentation."""
