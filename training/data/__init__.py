"""From sessions to batches: samples (frames + labels), datasets, augmentation, samplers."""
