"""Preprocessing of the COVID-CXNet input: lung crop (U-Net), CLAHE + BEASF channels, resize, tensor cache.

Modules (each imported only when used; OpenCV and torch are imported at their top):

- ``config``: ``PreprocessConfig`` and its stable ``config_hash()`` (the cache key's second half);
- ``enhance``: CLAHE, BEASF, histogram matching, resizing and the channel stack (numpy + OpenCV);
- ``augment``: the paper's training augmentations (torchvision transforms v2), seeded per sample;
- ``lungs``: the U-Net, its post-processing (two largest components, dilation, margin, box) and weight files;
- ``train_lungs``: training the U-Net on manifest rows that have ``mask_paths``;
- ``pipeline``: ``Preprocessor``, one image from decoded pixels to the ``(C, H, W)`` uint8 model input;
- ``cache``: the on-disk cache keyed by (pixel_sha256, config hash) and a torch ``Dataset`` over it;
- ``panel``: the picture ``cxrcurate show`` writes; ``cli``: the ``preprocess``, ``show`` and ``train-lungs`` commands.
"""
