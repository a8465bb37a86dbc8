"""Data layer: COCO / LVIS instance datasets, reproducible augmentations, resumable sampling, collation.

Typical use::

    ds = InstanceDataset.from_files("train.json", "images/", class_agnostic=True,
                                    augment=AUGMENT_PRESETS["paper"], seed=0)
    sampler = ResumableBatchSampler(len(ds), batch_size=8, seed=0, start_step=0)
    loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=collate)
"""

from tracenet.data.annotations import InstanceIndex, detect_format, load_instances, merge_indexes
from tracenet.data.collate import Batch, collate
from tracenet.data.copy_paste import copy_paste
from tracenet.data.dataset import InstanceDataset, read_image
from tracenet.data.masks import decode_segmentation, masks_to_boxes
from tracenet.data.sampler import ResumableBatchSampler
from tracenet.data.sources import DATA_PRESETS, DataSource, EvalOnlyDataError, load_sources, preset_sources
from tracenet.data.transforms import AUGMENT_PRESETS, AugmentConfig, Sample

__all__ = [
    "AUGMENT_PRESETS",
    "DATA_PRESETS",
    "AugmentConfig",
    "Batch",
    "DataSource",
    "EvalOnlyDataError",
    "InstanceDataset",
    "InstanceIndex",
    "ResumableBatchSampler",
    "Sample",
    "collate",
    "copy_paste",
    "decode_segmentation",
    "detect_format",
    "load_instances",
    "load_sources",
    "merge_indexes",
    "preset_sources",
    "masks_to_boxes",
    "read_image",
]
