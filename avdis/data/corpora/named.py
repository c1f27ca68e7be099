"""Which known corpus a folder's files are named as, for the fix when they are scanned as another."""

from __future__ import annotations

from pathlib import Path

from avdis.data.corpora import cremad, ravdess
from avdis.data.corpora.walk import files_under


def named_as(src: Path, files: list[Path] | None, corpus: str, skip: Path | None = None) -> str:
    """The fix for RAVDESS's or CREMA-D's files scanned as another `corpus` (the default data.corpus=synthetic), ''
    for files of neither: the first was told to write a ground_truth.csv for them, the second that no file was named
    right. `files`: None for those under `src` but `skip`."""
    files = files_under(src, skip)[0] if files is None else files
    for name, shown, adapter in (("ravdess", "RAVDESS", ravdess.scan), ("cremad", "CREMA-D", cremad.scan)):
        if name != corpus and adapter(src, files, True)[0]:  # audio alone: a clip of any file named as it names them
            return f"; these are {shown} files: preprocess them with --corpus {name} (data.corpus={name})"
    return ""
