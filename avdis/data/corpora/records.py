"""What a corpus scan yields: clip records and rejects, and which files may be media at all."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from avdis.errors import AvdisError


GROUND_TRUTH = "ground_truth.csv"  # a corpus's labels, one row per clip (what the synthetic generator writes)


class CorpusError(AvdisError):
    """A source folder that holds no usable corpus: bad input, found before any work."""

    exit_code = 2


@dataclass(frozen=True)
class ClipRecord:
    clip_id: str
    corpus: str
    speaker: str
    emotion: str
    source_path: str  # the file that names the clip (the video where there is one and it is used)
    audio_path: str
    video_path: str | None  # None: the clip's audio only (data.modality=audio)
    meta: dict[str, str] = field(default_factory=dict, compare=False)
    # (video, audio) pairs of the clip's own files, tried in turn only when the files above cannot be decoded (RAVDESS:
    # the 02 + 03 files behind a full-AV 01 file, which a bad download may have cut short, then a 02 or 03 with the
    # 01's other track; with data.modality=audio, no video and the 01 file's track behind a 03 file; CREMA-D: the .mp4
    # with the .wav behind the .flv, then each video with the AudioMP3/ file and with its own track behind the .wav)
    fallback: tuple[tuple[str | None, str], ...] = ()
    # other files of the clip that the scan marked unused (a video under data.modality=audio, a copy of the same
    # size, a file of the same bytes listed again in a ground_truth.csv, CREMA-D's AudioMP3/ file): no part of the
    # clip made (but from a fallback pair), but rejects of their own, naming why, should it not be made
    spare: tuple[str, ...] = ()
    # (video, audio) files of the same clip tried in turn should those above not decode: the pairs with a copy
    # (elsewhere in the tree) in place of one of the files, as the copy found first may be the broken one
    copies: tuple[tuple[str | None, str], ...] = ()


@dataclass(frozen=True)
class Reject:
    source_path: str
    reason: str
    # a file its clip was made without (another copy of it: RAVDESS's 02 + 03 files beside its full-AV 01 file, CREMA-D's
    # MP3s), or one that is no media (`no_media`: Thumbs.db, a README), no fault: counted apart, so a whole corpus's
    # worth of them does not hide the files that are broken
    unused: bool = False


Scan = tuple[list[ClipRecord], list[Reject]]
Adapter = Callable[[Path, list[Path], bool], Scan]  # (source folder, its files, audio only) -> records, rejects


# what a corpus of the user's own may hold as clips: such a file that ground_truth.csv does not list is a reject
MEDIA = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".flv", ".f4v", ".wmv", ".asf", ".mpg", ".mpeg", ".vob",
          ".ts", ".mts", ".m2ts", ".mxf", ".dv", ".3gp", ".3g2", ".ogv", ".wav", ".flac", ".mp3", ".m4a", ".m4b", ".aac",
          ".ogg", ".oga", ".opus", ".wma", ".aif", ".aiff", ".au", ".mka", ".caf", ".amr"}
# what may hold a corpus's clips packed (an actor's download not yet extracted): never taken for a file that is no media
ARCHIVES = {".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".zst", ".7z", ".rar"}


def no_media(path: str | Path) -> bool:
    """Whether a file is plainly no media: none of its name's suffixes names a media container or an archive
    (Thumbs.db, desktop.ini, a README, a spreadsheet; not `a.mp4.part`, a download cut short). In a RAVDESS or CREMA-D
    tree such a file is unused, no fault, and no part of the shards' fingerprint: an OS writes some on its own."""
    return not {suffix.lower() for suffix in Path(path).suffixes} & (MEDIA | ARCHIVES)


def packed(path: Path) -> bool:
    """Whether a file is an archive (an actor's download, Video_Speech_Actor_01.zip, not yet extracted)."""
    return path.suffix.lower() in ARCHIVES


PACKED = "an archive: the files packed in it are not read; extract it, anywhere under the source folder"
