"""Input data: image loading/preprocessing, synthetic multi-view scenes with ground truth."""
