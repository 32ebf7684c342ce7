"""scikit-learn's digits: 1,797 real 8x8 handwritten digits, shipped with scikit-learn (the default)."""

from __future__ import annotations

import numpy as np
import torch

from ..registry import DATASETS
from .core import ArraySplit, DataBundle, DatasetInfo, stratified_indices

# Fixed split: 20 % test, then 20 % of the rest for validation, stratified, seed 0.
_TEST_FRACTION = 0.2
_VAL_FRACTION = 0.2
_SPLIT_SEED = 0


@DATASETS.register("digits")
def load_digits(root=None, download: bool = False, val_size: float | int | None = None, **_) -> DataBundle:
    """scikit-learn digits (8x8 grey, 10 classes; fixed stratified train/val/test split)."""
    from sklearn.datasets import load_digits as sk_digits

    raw = sk_digits()
    x = torch.from_numpy((raw.images / 16.0).astype(np.float32)).unsqueeze(1)
    y = torch.from_numpy(raw.target.astype(np.int64))
    trainval, test = stratified_indices(y.numpy(), _TEST_FRACTION, _SPLIT_SEED)
    rel_train, rel_val = stratified_indices(y.numpy()[trainval], val_size or _VAL_FRACTION, _SPLIT_SEED)
    train, val = trainval[rel_train], trainval[rel_val]
    full = ArraySplit(x, y)
    tr = full.subset(train)
    mean = float(tr.x.mean())
    std = float(tr.x.std())
    info = DatasetInfo(
        name="digits", num_classes=10, input_shape=(1, 8, 8), mean=(round(mean, 4),), std=(round(std, 4),),
        classes=tuple(str(i) for i in range(10)), augment="none", default_eps=0.1,
        notes="scikit-learn load_digits; pixel values 0..16 scaled to [0, 1]",
    )
    return DataBundle(info, tr, full.subset(val), full.subset(test))
