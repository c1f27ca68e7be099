"""What a build's summary, or its error where no clip is usable, says beyond its counts: a corpus held twice, clips
whose sound came from lossy copies, placeholder labels, and a corpus of audio alone preprocessed for AV clips."""

from __future__ import annotations

from pathlib import Path

from avdis.config import DataConfig, FeatureConfig
from avdis.data.corpora import GROUND_TRUTH, ClipRecord, Reject, copies_found, placeholders_found, scan
from avdis.data.shards.encode import VIDEO_BY_NAME
from avdis.errors import counted


def copies_note(scan_rejects: list[Reject], corpus: str) -> dict[str, str]:
    """The summary's word on the scan's copies of clips' files, where there are any: each clip is read from one
    copy, and the others are unused, but a corpus held twice (Kaggle's RAVDESS) is better pointed at as one copy, and
    a ground_truth.csv better lists each recording once."""
    found = copies_found(scan_rejects)
    if not found:
        return {}
    first = f"first: {found[0].source_path}, {found[0].reason}"
    n = len(found)
    if corpus == "synthetic":  # a corpus of one's own: copies under other names, found by their bytes
        listed = (f"1 file listed in {GROUND_TRUTH} holds the same bytes as a file listed before it" if n == 1 else
                  f"{n} files listed in {GROUND_TRUTH} hold the same bytes as files listed before them")
        return {"copies": f"{listed} ({first}): each recording is one clip, from the row listing it first; list each "
                          f"recording once in {GROUND_TRUTH}"}
    copies = "1 file is a second copy of a clip's file" if n == 1 else f"{n} files are second copies of clips' files"
    return {"copies": f"{copies} (the same name and size; {first}): "
                      "each clip is read from one copy, the first found that decodes; where data.src holds the "
                      "corpus twice (Kaggle's RAVDESS holds its Actor_XX folders at its top and again under "
                      "audio_speech_actors_01-24/), point data.src at one copy"}


def audio_from_note(corpus: str, records: list[ClipRecord], audio_paths: list[str]) -> dict[str, str]:
    """The summary's word on a CREMA-D copy without AudioWAV/, whose clips' sound is their AudioMP3/ files' and their
    videos' own tracks (`audio_paths`, the clips made): lossy copies of the recording, of a rate and bandwidth that can
    differ from clip to clip and from the .wav files a corpus held whole is made of."""
    if corpus != "cremad" or any(Path(r.audio_path).suffix.lower() == ".wav" for r in records):
        return {}
    mp3 = sum(Path(p).suffix.lower() == ".mp3" for p in audio_paths)
    track = len(audio_paths) - mp3
    mixed = "; the two can differ in rate and bandwidth, and so clips by their source (see source_rates and bandwidths)"
    # only the sources that gave a clip: a copy of VideoFlash/ alone was told of '0 from AudioMP3/*.mp3'
    sources = ", ".join(f"{n} from {source}" for n, source in ((mp3, "AudioMP3/*.mp3"),
                                                               (track, "the videos' own tracks")) if n)
    # worded alike for one clip and many (it read '1 clip took their sound ... to make them of its recordings')
    return {"audio_from": f"the sound of {counted(len(audio_paths), 'clip')} came from lossy copies of the recording, "
                          f"not from AudioWAV/*.wav, which data.src does not hold: {sources}"
                          f"{mixed if mp3 and track else ''}; put CREMA-D's AudioWAV/ folder under data.src to make "
                          "the clips of its recordings (the shards are then made again)"}


def placeholders_note(scan_rejects: list[Reject]) -> dict[str, str]:
    """The summary's word on the rows of a ground_truth.csv holding placeholders (MSP-Podcast's speaker `Unknown`,
    IEMOCAP's emotion `xxx`), where there are any: a corpus most of whose rows are such rejects is told why in the
    summary, not in its rejects.parquet alone."""
    found = placeholders_found(scan_rejects)[0]
    if not found:
        return {}
    return {"placeholders": f"{placeholders_counted(scan_rejects)} (first: {found[0].source_path}: "
                            f"{found[0].reason})"}


def placeholders_counted(scan_rejects: list[Reject]) -> str:
    """'N rows of ground_truth.csv hold a placeholder ...' (how many of a speaker's and of an emotion's), '' for none:
    an error that no clip is usable says it too, beside its first rejects by file."""
    found, speakers, emotions = placeholders_found(scan_rejects)
    if not found:
        return ""
    which = ", ".join(f"{n} {what}" for n, what in ((speakers, "a speaker's"), (emotions, "an emotion's")) if n)
    one = len(found) == 1
    held = f"1 row of {GROUND_TRUTH} holds" if one else f"{len(found)} rows of {GROUND_TRUTH} hold"
    return f"{held} a placeholder where a label goes ({which}), {'a' if one else 'each a'} reject"


def audio_alone_hint(data: DataConfig, out_dir: str | None) -> str:
    """The fix for a corpus of audio alone (CREMA-D's AudioWAV only, RAVDESS's audio download) scanned for AV clips:
    each of its files is a reject for want of a video partner, a reason that does not say data.modality=audio exists."""
    if data.modality == "audio" or not scan(data.corpus, data.src, skip=out_dir, audio_only=True)[0]:
        return ""
    return ("; its audio files make clips of audio alone: preprocess them with data.modality=audio (and train with "
            "model.modality=audio)")


def no_video_anywhere(records: list[ClipRecord], decoded: list[Reject], data: DataConfig,
                       out_dir: str | None) -> str:
    """The fix for a RAVDESS or CREMA-D copy none of whose videos holds a video track (`audio_alone_hint`): each
    is told to be copied again, a file's fault, which said nothing of data.modality=audio for the corpus. So for a
    copy none of whose clips was made, each lost to its video (an .flv unreadable beside its whole .wav)."""
    from avdis.data.media import NO_VIDEO_TRACK

    empty = {r.source_path for r in decoded if r.reason.startswith(NO_VIDEO_TRACK)}
    if records and data.corpus in VIDEO_BY_NAME and all(r.video_path in empty for r in records):
        return f"; none of its videos holds a video track{audio_alone_hint(data, out_dir)}"
    heard = _heard_alone(records, data.features) if records else ""
    return f"; every clip was lost to its video ({heard}){audio_alone_hint(data, out_dir)}" if heard else ""


# the clips whose audio files `_heard_alone` decodes at most: ~0.5 s in the driver; all of CREMA-D's 7,442, each decoded
# into a clip (~45 ms), held its error back over 5 minutes after shard tasks that had failed each clip at once
HEARD_AT_MOST = 8


def _heard_alone(records: list[ClipRecord], feat: FeatureConfig) -> str:
    """What decoding the clips' own audio files alone found, where each tried makes a clip of audio alone (a clip not
    made then lost to its video): advice to preprocess audio alone is given only where it is so. '' where one fails
    (the first ends it) or a clip has none. A sample spread over the clips (sorted by clip_id: over the speakers) where
    they are more than HEARD_AT_MOST, which the words say."""
    from avdis.data.media import extract

    if any(r.video_path in (None, r.audio_path) for r in records):
        return ""
    tried = _spread(records, HEARD_AT_MOST)
    for rec in tried:
        try:
            extract(rec.audio_path, None, feat)
        except Exception:  # noqa: BLE001 - any file that fails to decode, as in `encode_any`
            return ""
    if len(tried) == len(records):
        return "each clip's audio file alone decodes whole"
    return f"the audio files of {len(tried)} of its {len(records)} clips, spread over it, decode whole alone"


def _spread(records: list[ClipRecord], most: int) -> list[ClipRecord]:
    """`most` of the records evenly from the first to the last (all where they are no more): every ceil(n / most)-th
    from the first took as few as 6 of 17 and never the last speakers' clips (none of CREMA-D's last 924)."""
    if len(records) <= most:
        return records
    return [records[i * (len(records) - 1) // (most - 1)] for i in range(most)]
