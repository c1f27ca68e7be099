"""Whether a media file is whole: the length its container or header declares against what the file holds.

ffmpeg reads most files cut short (an interrupted copy or download; a recording stopped before its writer closed it)
to their end without an error, as a shorter clip: a WAV, AIFF, FLAC or MP3 whose header declares more audio, an MP4
whose index places packets past the end (or, fragmented, whose last box runs past it), an AVI or Matroska file whose
RIFF chunk or segment runs past it. Each check here returns what was declared and what is held, or None for a whole
file or one whose header leaves its length open (a writer into a pipe); `media` rejects the clip naming both. An Ogg
or FLV file, an MP3 without a Xing/Info header (a CBR encode) or a Matroska file written live (its segment's size left
open) says no length in its header, but each of its pages, tags, frames or elements says how long it is, and a file
cut short ends inside the last (one cut exactly at a boundary between two stays unseen): `walks` walks them.
"""

from __future__ import annotations

import os
import struct
from functools import partial
from pathlib import Path
from typing import BinaryIO

import av

from avdis.data import walks

CUT_SHORT_S = 0.05  # a file missing more than this of what its header declares is a damaged copy, not a clip
# A WAV data chunk size from here up is a writer's placeholder for a length it could not know (its output a pipe):
# SoX's 0x7FFFF000, arecord's 0x7FFFFF00 and 0x80000000 (its 2 GiB cap), 0xFFFFFFFF (ffmpeg). No clip holds 2 GiB.
OPEN_WAV_LENGTH = 0x7FFFF000
W64_RIFF = b"riff\x2e\x91\xcf\x11\xa5\xd6\x28\xdb\x04\xc1\x00\x00"  # the GUID a Sony Wave64 (.w64) file begins with
HEAD_BYTES = 4096  # an EBML header may hold a Void element: its segment's size can sit past byte 64
SCAN_BYTES = walks.SCAN_BYTES  # bytes read at a time where a file is searched


def ends_past_file(path: str | Path) -> tuple[str, int, int] | None:
    """(what runs past the end of the file, the byte it runs to, the file's size) for a file whose container says how
    long it is: an MP4's last top-level box (see `walks.mp4_box_past`), an AVI's last RIFF chunk, a Matroska (.mkv,
    .webm) segment (its last element where the segment's size is left open, as a live writer or a browser's recorder
    leaves it), an Ogg file's last page, an FLV file's last tag, an MP3's last frame, walked from where its frames
    start (`walks.mp3_frames_start`) and past the ID3v2 tag between MP3s joined end to end, on into the second's
    frames where it is another stream, or an ID3v2 tag after its frames, which no frames follow (the second's tag, or
    one appended; `walks.Mp3Units`; one without a Xing/Info or VBRI header where ffmpeg reads one: one with such a
    header is told by `declared_s`), a raw AAC (.aac, ADTS) file's last frame; else None
    (also where a size is left open and nothing inside says more). A CAF's or an AU's data chunk too, whose size
    ffmpeg does not check against the file's, as a WAV's (`wav_held`). ffmpeg opens an MP4 cut short before its index
    (moov, which an MP4 not made for streaming writes after its media) as a damaged file ("Invalid data found"),
    fails on a raw AAC file's last, partial frame as on a damaged one ("corrupt audio stream"), and reads the others
    cut short to their end without an error: a shorter clip (an FLV's audio failed on its last, partial packet, told
    as a length its index did not declare). An MPEG transport stream's last packet too (.ts, a camcorder's .mts:
    each of a fixed size; ffmpeg dropped the last, partial packet: a shorter clip, or its audio's last frame failed as
    "corrupt audio stream"). A Sony Wave64 (.w64) file's riff chunk too, whose 64-bit size says how
    long the file is, as a WAV's data chunk does (ffmpeg reads one cut short to its end)."""
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        head = fh.read(HEAD_BYTES)
        if head[:4] == b"OggS":
            return walks.last_unit_past(fh, size, 0, walks.ogg_page, "Ogg page")
        if head[:3] == b"FLV" and len(head) >= 9:
            return walks.last_unit_past(fh, size, int.from_bytes(head[5:9], "big") + 4, walks.FlvTags(size), "FLV tag")
        if head[4:8] in walks.FIRST_BOXES:
            return walks.mp4_box_past(fh, size)
        for packet in (188, 192):  # an MPEG transport stream: a sync byte at the start of each of its first packets
            if all(head[at : at + 1] == bytes([walks.TS_SYNC]) for at in range(packet - 188, 3 * packet, packet)):
                return walks.ts_packet_past(fh, size, packet)
        fh.seek(start := walks.id3_end(head))
        first = fh.read(7)
        if walks.adts_frame_length(first, first) is not None:
            return walks.last_unit_past(fh, size, start, partial(walks.adts_frame, first=first), "AAC (ADTS) frame")
        if start or walks.mpeg_frame_length(first, first) is not None:  # its frames may start past zeros or a tag
            start = walks.mp3_frames_start(fh, size)
            if start is not None and not _mp3_counted(path):
                fh.seek(start)
                first = fh.read(4)
                units = walks.Mp3Units(first)
                cut = walks.last_unit_past(fh, size, start, units, "MPEG audio frame")
                return ("ID3v2 tag", *cut[1:]) if cut is not None and units.tag else cut
    if head[:4] == b".snd" and len(head) >= 12:  # Sun/NeXT audio: its data's offset and size (all bits set: open)
        end = int.from_bytes(head[4:8], "big") + int.from_bytes(head[8:12], "big")
        return ("AU data", end, size) if head[8:12] != b"\xff" * 4 and end > size else None
    if head[:16] == W64_RIFF and len(head) >= 24:  # Sony Wave64: the file's 64-bit size (-1 or more than 2^62: open)
        end = int.from_bytes(head[16:24], "little")
        return ("W64 riff chunk", end, size) if size < end < 1 << 62 else None
    if head[:4] == b"caff":  # Apple's Core Audio Format: chunks of 64-bit sizes, the data's -1 where left open
        with open(path, "rb") as fh:
            return walks.caf_chunk_past(fh, size)
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":  # an AVI over 1 GiB (OpenDML): RIFF 'AVIX' chunks follow
        with open(path, "rb") as fh:
            return walks.last_unit_past(fh, size, 0, walks.avi_riff, "AVI RIFF chunk")
    if head[:4] == b"\x1a\x45\xdf\xa3":  # EBML: its header, then the segment
        header, at = walks.vint(head, 4)
        segment = at + (header or 0)
        if header is None or head[segment : segment + 4] != b"\x18\x53\x80\x67":
            return None
        length, at = walks.vint(head, segment + 4)
        if length is not None:
            return ("Matroska segment", at + length, size) if at + length > size else None
        if at == segment + 4:  # its size runs past what was read: unsaid
            return None
        with open(path, "rb") as fh:  # its size left open: its elements say how long each is
            return walks.last_unit_past(fh, size, at, walks.MatroskaElements(), "Matroska element")
    return None


def flv_unfilled(path: str | Path) -> tuple[int, int] | None:
    """(where an FLV's tags stop, where its metadata says the file ended as written) for one whose tags stop before
    that in a file that holds that many bytes: zeros where a download that set the file's size first never filled in
    its last tags, or bytes damaged in place. ffmpeg reads the tags before them without an error, as a shorter clip.
    None for a whole file, one whose metadata says no size (a pipe's), or one cut short (`ends_past_file`)."""
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        head = fh.read(9)
        if head[:3] != b"FLV" or len(head) < 9:
            return None
        tags, at = walks.FlvTags(size), int.from_bytes(head[5:9], "big") + 4
        while at < size and (unit := tags(fh, at)) is not None and unit[0] <= size:
            at = unit[0]
    return (at, tags.written) if tags.written is not None and at < tags.written <= size else None


def matroska_unfilled(path: str | Path) -> tuple[int, int] | None:
    """(where a Matroska segment's elements stop, where the segment ends) for one the file holds whole whose elements
    stop before its end, zeros from there to it: a download that set the file's size first never filled in its last
    clusters. ffmpeg reads the clusters before them without an error, as a shorter clip. None for a whole file, one
    whose segment's size is left open (a live writer's: `ends_past_file` walks it) or runs past the end of the file
    (cut short), or one whose elements stop at bytes other than zeros (one of a kind the walk does not know)."""
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        head = fh.read(HEAD_BYTES)
        if head[:4] != b"\x1a\x45\xdf\xa3":
            return None
        header, at = walks.vint(head, 4)
        segment = at + (header or 0)
        if header is None or head[segment : segment + 4] != b"\x18\x53\x80\x67":
            return None
        length, at = walks.vint(head, segment + 4)
        if length is None or at == segment + 4 or at + length > size:
            return None
        end, elements = at + length, walks.MatroskaElements()
        while at < end and (unit := elements(fh, at)) is not None and unit[0] <= end:
            at = unit[0]
        if at >= end or not _zeros(fh, at, end):
            return None
    return at, end


def ogg_unended(path: str | Path) -> int | None:
    """Where an Ogg file's pages stop, before the last page of one of its streams (each marks it: end of stream), at
    bytes that are no page: zeros to the end of the file where a download that set the file's size first never filled
    in its last pages, or bytes damaged in place, pages starting again after them. ffmpeg reads the pages before them
    without an error, as a shorter clip. None for a whole file (bytes appended after its streams ended too), one whose
    pages run to its end (a recording stopped before it was closed) or past it (`ends_past_file`), or one whose last
    page, unmarked, is followed by other bytes and no page: a tag or text a tool appended to a stream a recorder or a
    radio capture left unmarked, which no copy would change."""
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        if fh.read(4) != b"OggS":
            return None
        at, open_streams = 0, set()
        while at < size and (unit := walks.ogg_page(fh, at)) is not None and unit[0] <= size:
            fh.seek(at + 5)
            flags, serial = fh.read(1)[0], fh.read(10)[6:]
            (open_streams.discard if flags & 4 else open_streams.add)(serial)
            at = unit[0]
        unfilled = at < size and bool(open_streams) and (_zeros(fh, at, size) or _found(fh, at, size, b"OggS"))
    return at if unfilled else None


def _zeros(fh: BinaryIO, at: int, end: int) -> bool:
    """Whether the bytes from `at` to `end` are all zeros."""
    fh.seek(at)
    return not any(fh.read(min(SCAN_BYTES, end - start)).strip(b"\0") for start in range(at, end, SCAN_BYTES))


def _found(fh: BinaryIO, at: int, end: int, found: bytes) -> bool:
    """Whether `found` lies in the bytes from `at` to `end`."""
    for start in range(at, end, SCAN_BYTES):
        fh.seek(start)
        if found in fh.read(min(SCAN_BYTES + len(found) - 1, end - start)):  # overlapping the next block by all but one
            return True
    return False


ZERO_TAIL = 1024  # bytes of zeros from which the end of a file that fails to decode is told as never filled in


def zero_tail(path: str | Path) -> int | None:
    """Where the zeros a file ends with begin, for `ZERO_TAIL` or more of them (where a download that set the file's
    size first stopped); None for fewer."""
    size = os.path.getsize(path)
    start = size
    with open(path, "rb") as fh:
        while start > 0:
            at = max(0, start - SCAN_BYTES)
            fh.seek(at)
            block = fh.read(start - at)
            kept = len(block.rstrip(b"\0"))
            if kept:
                start = at + kept
                break
            start = at
    return start if size - start >= ZERO_TAIL else None


def w64_piped(path: str | Path) -> bool:
    """Whether a file is a Sony Wave64 whose riff size is left open, as ffmpeg leaves it writing into a pipe (-1, and
    its data chunk's 2^63 - 1): ffmpeg cannot read such a file back ("Invalid data found"); libsndfile can."""
    with open(path, "rb") as fh:
        head = fh.read(24)
    return head[:16] == W64_RIFF and len(head) == 24 and int.from_bytes(head[16:24], "little") >= 1 << 62


def wav_wide_open(path: str | Path) -> bool:
    """Whether a file is an RF64 or BW64 WAV whose ds64 chunk leaves its data's size open (0), as ffmpeg leaves it
    writing into a pipe. ffmpeg reads a RIFF WAV's open size (0, 0xFFFFFFFF) as "to the end of the file", but takes
    the ds64 chunk's at its word: it read no sample of such a file, a reject told to be copied again, though the
    file held its whole recording. Its wav demuxer's ignore_length reads it to the end, as it does a RIFF WAV's."""
    with open(path, "rb") as fh:
        if fh.read(4) not in (b"RF64", b"BW64"):
            return False
        fh.seek(0)
        for kind, size in walks.wav_chunks(fh):
            if kind == b"ds64":  # its RIFF size, then its data chunk's, 64 bits each
                held = fh.read(16)
                return size >= 16 and len(held) == 16 and not any(held[8:16])
    return False


def mp4_unindexed(path: str | Path) -> bool:
    """Whether a file is an MP4 (or a QuickTime .mov) without its index (moov): `walks.mp4_unindexed`."""
    with open(path, "rb") as fh:
        return fh.read(8)[4:8] in walks.FIRST_BOXES and walks.mp4_unindexed(fh, os.path.getsize(path))


def mp3_frames_end(path: str | Path) -> int | None:
    """Where an MP3's frames end when bytes in which its frames do not start again follow them to the end of the file
    (zeros or junk a tool appended, however many; `walks.mpeg_frames_resume`): ffmpeg hands those to the decoder as
    one more packet, which fails ("Invalid data found") where a player passes over it. The walk starts where the
    frames do (`walks.mp3_frames_start`: past zeros or a second tag after the ID3 one too) and passes over the ID3v2
    tag between MP3s joined end to end, on into the second's frames where it is another stream (`walks.Mp3Units`:
    they are no bytes appended). None for a file of no MPEG
    audio, one whose frames run to its end or past it (cut short), or one whose frames start again after such bytes
    (damage inside the file)."""
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        at = walks.mp3_frames_start(fh, size)
        if at is None:
            return None
        fh.seek(at)
        units = walks.Mp3Units(fh.read(4))
        while at < size and (unit := units(fh, at)) is not None:
            if unit[0] > size:  # cut short
                return None
            at = unit[0]
        return None if at >= size or walks.mpeg_frames_resume(fh, at, size, units.first) is not None else at


def wav_held(path: str | Path) -> tuple[float, float] | None:
    """(seconds its header declares, seconds the file holds) of a WAV (RIFF, RF64 or BW64) whose data chunk runs past
    the end of the file; None for a whole one, or one whose header leaves its length open (a streaming writer's 0, or
    a placeholder from `OPEN_WAV_LENGTH` up in a RIFF WAV's 32 bits). ffmpeg reads such a file to its end without an
    error: a copy cut short was a shorter clip."""
    with open(path, "rb") as fh:
        # an RF64's or BW64's data size is its ds64 chunk's, 64 bits wide: from OPEN_WAV_LENGTH up a size, as such a
        # file over 2 GiB holds, not a placeholder (but 0xFFFFFFFF, where it has no ds64 chunk)
        wide = fh.read(4) in (b"RF64", b"BW64")
        fh.seek(0)
        byte_rate = 0
        for kind, size in walks.wav_chunks(fh):
            if kind == b"fmt " and size >= 12:
                byte_rate = struct.unpack("<I", fh.read(12)[8:12])[0]
            elif kind == b"data":
                held = os.fstat(fh.fileno()).st_size - fh.tell()
                placeholder = size >= OPEN_WAV_LENGTH and (not wide or size == 0xFFFFFFFF)
                if size == 0 or placeholder or held >= size or not byte_rate:
                    return None
                return size / byte_rate, held / byte_rate
    return None


def _mp3_counted(path: str | Path) -> bool:
    """Whether an MP3's first frame is a Xing/Info header that counts its frames, or a VBRI one (which always
    does), where ffmpeg reads one: ffmpeg's length then comes from that count; without one it is guessed from the
    file's size, which a copy cut short shrinks along with it. Not where the header also counts its frames' bytes and
    the file is more than a sixteenth larger: ffmpeg takes it for MP3s joined end to end (or bytes appended) and
    guesses the length from the size. A file whose last frames were never filled in (zeros to its full size) stays
    within the count."""
    frame, at, start = _first_mp3_frame(path)
    if at is None:
        return False
    if frame[at : at + 4] in (b"Xing", b"Info") and frame[at + 7] & 1:
        counted = int.from_bytes(frame[at + 12 : at + 16], "big") if frame[at + 7] & 2 else 0
        return not counted or os.path.getsize(path) - start - counted <= counted >> 4
    return frame[36:40] == b"VBRI"


def _first_mp3_frame(path: str | Path) -> tuple[bytes, int | None, int]:
    """An MP3's first frame's first bytes (`walks.mp3_frames_start`), where a Xing/Info header would start in them
    (after its side information), and where the frame starts. None for the second where it is no MPEG audio frame, or
    lies where ffmpeg looks for no such header: only right after the ID3v2 tags (one after another), not past zeros a
    tagger left, where ffmpeg decodes the header's frame as sound and guesses the length from the file's size."""
    with open(path, "rb") as fh:
        start = walks.mp3_frames_start(fh, os.fstat(fh.fileno()).st_size)
        if start is None:
            return b"", None, 0
        fh.seek(start)
        frame = fh.read(64)
        read_at = walks.id3_tags_end(fh)
    if start != read_at or len(frame) < 44 or frame[0] != 0xFF or frame[1] & 0xE0 != 0xE0:
        return frame, None, start
    mpeg1, mono = (frame[1] >> 3) & 3 == 3, frame[3] >> 6 == 3
    return frame, 4 + (17 if mono else 32) if mpeg1 else 4 + (9 if mono else 17), start


def declared_s(path: str | Path, container: av.container.InputContainer, stream: av.stream.Stream) -> float | None:
    """Seconds of `stream` a FLAC's STREAMINFO, an AIFF's COMM or an MP3's Xing/Info/VBRI header declares, as ffmpeg
    reads them (an MP3's encoder delay and padding taken off); None where the header leaves the length open (a FLAC or
    AIFF written into a pipe, 0; an MP3 without such a header, or one ffmpeg reads none of: `_mp3_counted`). ffmpeg
    decodes a copy cut short at a frame's end without an error."""
    if not stream.duration or container.format.name not in ("flac", "aiff", "mp3"):
        return None
    if container.format.name == "mp3" and not _mp3_counted(path):
        return None
    return float(stream.duration * stream.time_base)


def index_past_end(path: str | Path, stream: av.stream.Stream) -> tuple[float, float] | None:
    """(seconds its index lists, seconds before the first packet it places past the end of the file) of a track whose
    index (an MP4's moov written before its media, as a download's is) places data past the end of the file; None for
    a whole one. ffmpeg reads such a copy cut short to its end without an error: its video was a shorter clip, and its
    audio failed on the last, partial packet as "corrupt audio stream". Only entries that give their packet's size:
    a sample table (MP4's, AVI's), not the seek points a tool may have written into an FLV's metadata."""
    size = os.path.getsize(path)
    entries = stream.index_entries
    beyond = next((e for e in entries if e.pos >= 0 and e.size > 0 and e.pos + e.size > size), None)
    if beyond is None:
        return None
    start, base = stream.start_time or 0, float(stream.time_base)
    listed = stream.duration if stream.duration else entries[-1].timestamp - start
    return listed * base, max(0, beyond.timestamp - start) * base
