"""Training: the loop, augmentation, snapshot quality and the runs folder."""
