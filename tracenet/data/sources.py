"""Training data sources: several annotation files mixed into one index, each exhaustive or partial.

A :class:`DataSource` is one instance JSON + its image folder + whether its images are exhaustively annotated.
coco-mini's ``train.json`` is exhaustive (every object of a photo is listed); coco-single's ``single.json`` is
not (one to a few objects per photo): its images train their listed objects as positives and give no
background (see :mod:`tracenet.train.targets`). Mixing is plain concatenation: every image of every source
appears once per epoch of the :class:`~tracenet.data.ResumableBatchSampler`.

Named mixes of the folders under ``../shared/data`` (``DATA_PRESETS``)::

    coco-mini          coco-mini/train.json                                   (364 images, exhaustive)
    coco-mini+single   coco-mini/train.json + coco-single/single.json (partial; 364 + 621 images)

Evaluation sets are refused as training data: any ``val.json`` (coco-mini val), ``person.json`` and any JSON in
a ``coco-person`` folder. (The interactive benchmarks have no JSON and cannot be given.)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tracenet.data.annotations import InstanceIndex, load_instances, merge_indexes

__all__ = [
    "DATA_PRESETS",
    "DataSource",
    "EvalOnlyDataError",
    "check_trainable",
    "load_sources",
    "preset_sources",
    "source_from_folder",
]

# folder under the data root -> (annotation file, exhaustive)
KNOWN_FOLDERS: dict[str, tuple[str, bool]] = {
    "coco-mini": ("train.json", True),
    "coco-single": ("single.json", False),
}
DATA_PRESETS: dict[str, tuple[str, ...]] = {
    "coco-mini": ("coco-mini",),
    "coco-mini+single": ("coco-mini", "coco-single"),
}
_EVAL_ONLY_FILES = {"val.json": "coco-mini val", "person.json": "coco-person"}


class EvalOnlyDataError(ValueError):
    """An evaluation set was given as training data."""


@dataclass(frozen=True)
class DataSource:
    """One training source: ``ann_file`` (COCO / LVIS JSON), ``images_dir``, and ``exhaustive`` (False: only
    the listed objects of each photo are annotated)."""

    ann_file: Path
    images_dir: Path
    exhaustive: bool = True

    def describe(self) -> str:
        return f"{self.ann_file} ({'exhaustive' if self.exhaustive else 'partial annotations'})"


def check_trainable(ann_file: str | os.PathLike) -> None:
    """Raise :class:`EvalOnlyDataError` when ``ann_file`` is one of the evaluation-only sets."""
    path = Path(ann_file)
    what = _EVAL_ONLY_FILES.get(path.name) or ("coco-person" if path.resolve().parent.name == "coco-person" else None)
    if what is not None:
        raise EvalOnlyDataError(
            f"{path} is {what}, an evaluation set: it must not be trained on (train on coco-mini/train.json, "
            f"optionally with coco-single/single.json as partial annotations)"
        )


def source_from_folder(folder: str | os.PathLike, *, exhaustive: bool | None = None) -> DataSource:
    """The source in ``folder``: ``train.json`` if present, else the folder's only other ``*.json``; images in
    ``folder/images``. ``exhaustive`` None: known folders (``coco-single``) say, others are exhaustive."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"data folder {folder} does not exist")
    known = KNOWN_FOLDERS.get(folder.resolve().name)
    if (folder / "train.json").is_file():
        ann = folder / "train.json"
    elif known is not None and (folder / known[0]).is_file():
        ann = folder / known[0]
    else:
        jsons = sorted(p for p in folder.glob("*.json") if p.name not in _EVAL_ONLY_FILES)
        if len(jsons) != 1:
            raise FileNotFoundError(
                f"{folder}: expected train.json or exactly one annotation JSON, found {[p.name for p in jsons]}"
            )
        ann = jsons[0]
    if exhaustive is None:
        exhaustive = known[1] if known is not None and known[0] == ann.name else True
    return DataSource(ann_file=ann, images_dir=folder / "images", exhaustive=exhaustive)


def preset_sources(name: str, root: str | os.PathLike) -> list[DataSource]:
    """The sources of the named mix ``DATA_PRESETS[name]`` under ``root`` (e.g. ``../shared/data``)."""
    if name not in DATA_PRESETS:
        raise ValueError(f"unknown data preset {name!r}; choose one of {sorted(DATA_PRESETS)}")
    out = []
    for folder in DATA_PRESETS[name]:
        ann, exhaustive = KNOWN_FOLDERS[folder]
        out.append(DataSource(Path(root) / folder / ann, Path(root) / folder / "images", exhaustive))
    return out


def load_sources(
    sources: list[DataSource], *, format: str = "auto", class_agnostic: bool = False
) -> InstanceIndex:
    """Load every source (refusing evaluation sets) and merge them into one index, in the order given."""
    if not sources:
        raise ValueError("no training data source given")
    indexes = []
    for src in sources:
        check_trainable(src.ann_file)
        indexes.append(
            load_instances(
                src.ann_file,
                src.images_dir,
                format=format,
                class_agnostic=class_agnostic,
                exhaustive=src.exhaustive,
            )
        )
    return merge_indexes(indexes)
