"""Corpus adapters: a source folder -> clip records, and rejects for files that can't be used.

RAVDESS and CREMA-D labels are canonical (`avdis.config.EMOTIONS`); `speaker` is the corpus's own
actor ID as written in the file name. Nothing is decoded here: media problems surface in preprocessing.

The adapters, one module each: `ravdess`, `cremad`, `ground_truth` (a generated corpus, or the user's own); what
they share: `records` (what a scan yields), `walk` (finding the files), `copies` (a corpus held twice), `sniff`
(bytes read without decoding), `named` (a corpus scanned as another).
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

from avdis.data.corpora import cremad, ground_truth, ravdess
from avdis.data.corpora.copies import copies_found
from avdis.data.corpora.ground_truth import placeholders_found
from avdis.data.corpora.named import named_as
from avdis.data.corpora.records import GROUND_TRUTH, Adapter, ClipRecord, CorpusError, Reject, Scan, no_media
from avdis.data.corpora.walk import files_under

__all__ = ["ADAPTERS", "GROUND_TRUTH", "ClipRecord", "CorpusError", "Reject", "Scan", "copies_found", "named_as",
           "no_media", "placeholders_found", "scan", "source_folder"]


ADAPTERS: dict[str, Adapter] = {  # keyed by config.CORPORA
    "ravdess": ravdess.scan,
    "cremad": cremad.scan,
    "synthetic": ground_truth.scan,
}


def source_folder(src: str | Path, corpus: str | None = None) -> Path:
    """`src` as a folder, or CorpusError naming it (checked before any output is touched). A generated `corpus`
    (synthetic) that is not there yet is said as such: `avdis preprocess` on smoke.yaml, whose comment says its corpus
    is "made on first use", was told to give the corpus's top folder, which nothing had made."""
    root = Path(src)
    if not root.is_dir():
        spelt = _spelt_otherwise(root) if not root.exists() else None
        if spelt is not None:
            raise CorpusError(
                f"{root}: source folder does not exist as typed; {spelt} is there, named in another Unicode form (a "
                "Mac writes an accented letter decomposed, as a letter and its accent, a keyboard types it as one "
                "character): give data.src as it is written there (type it with a wildcard, or paste it from `ls`), "
                "or rename it (convmv -r --nfc -f utf8 -t utf8 --notest FOLDER)")
        made = ("; a generated corpus (data.corpus=synthetic) is made by `avdis synth --out "
                f"{root}` (its flags are data.synth's settings), or with its shards by the first `avdis sweep` or "
                "`avdis train` on it" if corpus == "synthetic" and not root.exists() else "")
        raise CorpusError(f"{root}: {'not a folder' if root.exists() else 'source folder does not exist'}; "
                          f"give the corpus's top folder as --src (data.src){made}")
    return root


def _spelt_otherwise(path: Path) -> Path | None:
    """The folder `path` names with its names in another Unicode normal form (a folder a Mac named `Corpora ñ`,
    decomposed, typed composed), where there is one; None where there is none, or a folder on the way cannot be
    listed."""
    found = Path(path.anchor)
    for part in path.parts[1:] if path.anchor else path.parts:
        if not (found / part).exists():
            try:
                names = os.listdir(found)
            except OSError:
                return None
            part = next((n for n in sorted(names)
                         if unicodedata.normalize("NFC", n) == unicodedata.normalize("NFC", part)), None)
            if part is None:
                return None
        found = found / part
    return found if found.is_dir() and found != path else None


def scan(corpus: str, src: str | Path, skip: str | Path | None = None, audio_only: bool = False) -> Scan:
    """Clip records (sorted by clip_id) and rejects for the corpus under `src`, leaving out the folder `skip`;
    `audio_only` (data.modality=audio): clips of audio alone, from audio files where the corpus has them."""
    root = source_folder(src)
    if corpus not in ADAPTERS:
        raise CorpusError(f"unknown corpus {corpus!r}; choose one of {sorted(ADAPTERS)}")
    files, walk_rejects = files_under(root, Path(skip) if skip else None)
    records, rejects = ADAPTERS[corpus](root, files, audio_only)
    rejects = walk_rejects + rejects
    if not records and not rejects:
        what = f"{GROUND_TRUTH} lists no clips" if (root / GROUND_TRUTH).is_file() else "empty folder"
        raise CorpusError(f"{root}: {what}, no {corpus} files found")
    return sorted(records, key=lambda r: r.clip_id), rejects
