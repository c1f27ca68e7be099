"""Copies of a clip's file in a RAVDESS or CREMA-D tree that holds the corpus twice: each is unused while its clip is
made, and the clip's further file should the one found first not decode."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from avdis.data.corpora.records import Reject


def duplicate(path: Path, first: Path, rejects: list[Reject], copies: list[int]) -> None:
    """Reject `path`, a second file of the clip and modality of `first`, which the caller keeps as the clip's further
    file (`with_copies`); a copy of it (the same size, not empty: a tree holding the corpus twice, as Kaggle's RAVDESS
    holds its Actor_XX folders at its top and again under audio_speech_actors_01-24/) has its place kept in `copies`,
    to be marked unused should the clip be made. The reason as it was, which shards made before are fingerprinted
    with."""
    try:
        same = os.stat(path).st_size == os.stat(first).st_size > 0
    except OSError:
        same = False
    if same:
        copies.append(len(rejects))
    rejects.append(Reject(str(path), f"duplicate of {first} (same clip, same modality)"))


def with_copies(pairs: tuple[tuple[str | None, str], ...],
                 others: list[tuple[Path, Path]]) -> tuple[tuple[str | None, str], ...]:
    """The (video, audio) `pairs` a clip is made from (its files, then its fallbacks), each with a copy in place of the
    file it copies (`others`: (file, copy)), in turn: decoding tries them should those pairs not decode, as the copy
    found first may be the broken one: cut short by a download (another size), or damaged in place or never filled in
    (a downloader that sets a file's size first: the same size). A copy of another size stays a fault while unused."""
    tries: dict[tuple[str | None, str], None] = {}
    for pair in pairs:
        for first, copy in others:
            if str(first) in pair:
                tries[tuple(str(copy) if p == str(first) else p for p in pair)] = None
    return tuple(tries)


def copies_found(rejects: list[Reject]) -> list[Reject]:
    """The rejects that are copies of files a clip was made of (`duplicate`), by file."""
    return sorted((r for r in rejects if r.unused and r.reason.startswith("duplicate of ")), key=lambda r: r.source_path)


def copies_unused(rejects: list[Reject], copies: list[int]) -> tuple[str, ...]:
    """The copies among `rejects` (places `duplicate` kept) of the files of a clip that has a record, marked unused:
    a corpus held twice must not hide its broken files among half its files. Their files: the clip's spares (rejects of
    their own should it not be made)."""
    for i in copies:
        rejects[i] = replace(rejects[i], unused=True)
    return tuple(rejects[i].source_path for i in copies)
