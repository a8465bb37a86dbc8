"""Output files that are all or nothing: check every path before any work, then write through temp files.

A command that fails must leave no file behind and must not overwrite an existing one. So it calls
:func:`check_output` for each path before it computes anything (suffix known, not a folder, a folder that can
be created and written), encodes every file to bytes, and only then :func:`write_all`, which writes each to a
temporary file next to its destination and renames them into place (``os.replace``, atomic on one filesystem)
only once all were written.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["IMAGE_SUFFIXES", "check_output", "encode_image", "write_all"]

IMAGE_SUFFIXES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP",
                  ".tif": "TIFF", ".tiff": "TIFF"}
"""Image file suffixes the commands write, and their Pillow format names."""


def check_output(path: str | Path, what: str, suffixes: Iterable[str] = IMAGE_SUFFIXES) -> str:
    """Raise ``ValueError`` naming ``what`` (e.g. ``"--overlay"``) unless ``path`` can be written.

    Checks the suffix is one of ``suffixes``, that ``path`` is not a folder, and that the nearest existing
    folder above it is a writable folder (missing folders are created when writing). Writes nothing.

    Returns:
        The suffix, lower case (e.g. ``".png"``).
    """
    path = Path(path)
    allowed = sorted(suffixes)
    suffix = path.suffix.lower()
    if suffix not in allowed:
        raise ValueError(f"{what} {path}: unknown image type {path.suffix or '(no suffix)'!r}; use one of "
                         f"{', '.join(allowed)}")
    if path.is_dir():
        raise ValueError(f"{what} {path} is a folder; give a file name")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{what} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {path}: the folder {parent} is not writable")
    return suffix


def encode_image(array: np.ndarray, suffix: str, **save_kwargs: object) -> bytes:
    """``array`` (``H x W`` bool / uint8, ``H x W x 3`` RGB or ``H x W x 4`` RGBA uint8) encoded as the image type
    of ``suffix`` (a key of :data:`IMAGE_SUFFIXES`); bool masks become 0/255. ``save_kwargs`` go to Pillow."""
    arr = np.asarray(array)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=IMAGE_SUFFIXES[suffix.lower()], **save_kwargs)
    return buf.getvalue()


def write_all(files: Iterable[tuple[str | Path, bytes]]) -> None:
    """Write every ``(path, data)``, or none: temp files next to each destination, renamed into place only after
    all were written (parent folders are created). On failure the temp files are removed and ``OSError`` names
    the file that failed."""
    staged: list[tuple[Path, str]] = []
    try:
        for path, data in files:
            path = Path(path)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
                staged.append((path, tmp))
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
            except OSError as exc:
                raise OSError(f"could not write {path}: {exc.strerror or exc}") from exc
        for path, tmp in staged:
            os.replace(tmp, path)
    except BaseException:
        for _, tmp in staged:
            if os.path.exists(tmp):
                os.unlink(tmp)
        raise
