"""Data sets: COCO-format reading and evaluation, synthetic data, detection batches."""
