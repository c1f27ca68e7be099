"""Copies of a clip's file in a RAVDESS or CREMA-D tree that holds the corpus twice: each is unused while its clip is
made, and the clip's further file should the one found first not decode. And one recording under the names of two
clips (`named_twice`), which makes neither."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Callable

from avdis.data.corpora.records import Reject
from avdis.data.corpora.sniff import no_recording, same_bytes, silent


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


def named_twice(files: dict[str, str], shown: Callable[[str], tuple[tuple[str, str], ...]]) -> dict[str, str]:
    """The files of `files` (each file a clip is made of -> that clip, in the order to compare them) holding the same
    bytes as a file of another clip -> why no clip is made of it. In a corpus whose names are its labels (RAVDESS,
    CREMA-D) one recording under two names is one sound trained as two labels, which within_speaker could put one in
    train and the other in test, and which name is right is unknown: CREMA-D ships three such pairs, and a user's
    copy may hold a file copied under another name. `shown`: a clip's name as (field, value) pairs, the fields whose
    values differ told. A file of digital silence (or never filled in), or one that holds no recording
    (`sniff.no_recording`), is no recording named twice: two as long as each other are alike, each a reject of its
    own when decoded. Only files that hold another's bytes are read for it."""
    groups: dict[str, list[str]] = {}
    for copy, first in same_bytes(list(files)).items():
        if files[copy] != files[first] and not (silent(first) or no_recording(first)):
            groups.setdefault(first, [first]).append(copy)
    reasons = {}
    for group in groups.values():
        for path in group:
            others = [p for p in group if files[p] != files[path]]
            mine, theirs = shown(files[path]), shown(files[others[0]])
            differ = ", ".join(f"{field} ({b}, here {a})" for (field, a), (_, b) in zip(mine, theirs) if a != b)
            reasons[path] = (f"the same bytes as {' and '.join(others)}, whose name says another {differ}: one "
                             f"recording under {len(group)} names, which is right is unknown: no clip is made of it")
    return reasons
