"""Reading a file's bytes without decoding it (nothing is decoded in a scan): digital silence, no recording at all (a
header alone, text), and files holding the same bytes."""

from __future__ import annotations

import codecs
import hashlib
import os
import struct
import unicodedata
from pathlib import Path
from typing import BinaryIO

from avdis.data import walks


def silent(path: str) -> bool:
    """Whether a file is digital silence, read without decoding (nothing is decoded in a scan): a WAV (RIFF, RF64 or
    BW64) whose samples are all zero bytes (8-bit PCM, whose silence is 0x80, aside; a RIFF WAV's data chunk of size 0
    is a length a streaming writer left open: its samples run to the end of the file, as ffmpeg reads them), an MP3
    whose frames code no sound (CREMA-D's AudioMP3/ files, a clip's sound in a copy without AudioWAV/), or a file
    never filled in (a downloader that set its size first: zero bytes throughout), whose copy elsewhere in the tree
    may be whole."""
    try:
        with open(path, "rb") as fh:
            if not any(block.strip(b"\0") for block in iter(lambda: fh.read(1 << 20), b"")):
                return True
            fh.seek(0)
            if Path(path).suffix.lower() == ".mp3":
                return walks.mp3_silent(fh)
            bits = 0
            for kind, size in walks.wav_chunks(fh):
                if kind == b"fmt " and size >= 16:
                    bits = struct.unpack("<H", fh.read(16)[14:16])[0]
                elif kind == b"data":
                    size = size or os.fstat(fh.fileno()).st_size - fh.tell()  # 0: left open, read to the end
                    return bits > 8 and not any(fh.read(min(1 << 20, size - at)).strip(b"\0")
                                               for at in range(0, size, 1 << 20))
    except OSError:
        return False
    return False


def is_text(head: bytes) -> bool:
    """Whether a file's first bytes are text: UTF-8 (an error page a downloader saved often is), a character cut at
    their end aside, with no control character but tabs and line breaks. No media file's header is: each holds a
    binary size or version (a NUL, an 0xFF)."""
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head)
    except UnicodeDecodeError:
        return False
    return not any(unicodedata.category(c) == "Cc" and c not in "\t\n\r" for c in text)


def no_recording(path: str) -> bool:
    """Whether a file holds no recording two names could share, read without decoding: text (a Git LFS pointer, which a
    clone without `git lfs pull` leaves; an error page a downloader saved) or a header with nothing after it (a WAV's
    with no sample, whole chunks such as a LIST after it aside; an MP3's ID3 tag with no frame anywhere after it; an
    FLV's metadata with no sound or picture; an MP4's boxes with no media). Two such alike are two broken files, each
    a reject of its own when decoded; any sound after a header is a recording, however short (a second of CREMA-D's
    16 kHz sound as an .mp3 is 3.4 KiB: a floor of 4 KiB let such twins through)."""
    try:
        with open(path, "rb") as fh:
            size, head = os.fstat(fh.fileno()).st_size, fh.read(512)
            fh.seek(0)
            if is_text(head):
                return True
            if head[:4] in (b"RIFF", b"RF64", b"BW64"):  # the WAVs `walks.wav_chunks` walks
                # a sample after its data chunk's header, whatever its size (0 or 0xFFFFFFFF: left open, read to the
                # end), but whole chunks to the end of the file (a LIST a writer appended to a header alone) are none
                return not any(kind == b"data" and not walks.riff_chunks_to_end(fh, fh.tell(), size)
                               for kind, _ in walks.wav_chunks(fh))
            if head[:3] == b"FLV":
                return not _flv_media(fh, int.from_bytes(head[5:9], "big") + 4, size)
            if head[4:8] == b"ftyp":
                return not _mp4_media(fh, size)
            if Path(path).suffix.lower() == ".mp3":  # its frames may start past zeros or a second tag, as ffmpeg finds
                return walks.mp3_frames_start(fh, size) is None
    except OSError:
        return False
    return False


def _flv_media(fh: BinaryIO, at: int, size: int) -> bool:
    """Whether an FLV's tags from `at` (past its header and the first PreviousTagSize) hold a byte of sound or picture:
    a script data tag (its metadata, written first) holds neither."""
    while at + 11 < size:
        fh.seek(at)
        tag = fh.read(4)
        if tag[0] in (8, 9) and int.from_bytes(tag[1:4], "big"):
            return True
        at += 11 + int.from_bytes(tag[1:4], "big") + 4
    return False


def _mp4_media(fh: BinaryIO, size: int) -> bool:
    """Whether an MP4's top-level boxes hold an mdat (its media) with a byte of its own."""
    at = 0
    while at + 8 <= size:
        fh.seek(at)
        box = fh.read(16)
        length, header = int.from_bytes(box[:4], "big"), 8
        if length == 1:  # a 64-bit size follows the type
            length, header = int.from_bytes(box[8:16], "big"), 16
        if box[4:8] == b"mdat":
            return at + header < size
        if length < 8:
            return False
        at += length
    return False


def same_bytes(paths: list[str]) -> dict[str, str]:
    """Each of `paths` whose bytes are those of one before it -> that first one. Only files of the same size are read,
    first 4 KiB at their start, middle and end (`_sampled`), then whole where those match: a rescan (every `avdis
    train`) reads 12 KiB of each clip of a corpus whose WAVs all last as long (one size), where reading each one's
    opening 64 KiB read 2/3 of a 3 s, 16 kHz clip. Empty files are no copies (each is a reject)."""
    by_size: dict[int, list[str]] = {}
    for p in paths:
        try:
            size = os.stat(p).st_size
        except OSError:
            continue
        if size:
            by_size.setdefault(size, []).append(p)
    first_of: dict[str, str] = {}
    for size, group in ((k, g) for k, g in by_size.items() if len(g) > 1):
        heads: dict[bytes, list[str]] = {}
        for p in group:
            heads.setdefault(_sampled(p, size), []).append(p)
        for same_head in (g for g in heads.values() if len(g) > 1):
            seen: dict[bytes, str] = {}
            for p in same_head:
                first_of.setdefault(p, seen.setdefault(_digest(p), p))
    return {p: first for p, first in first_of.items() if p != first}


SAMPLE = 4096  # bytes `_sampled` reads at each of a file's start, middle and end


def _sampled(path: str, size: int) -> bytes:
    """sha256 of a file's `SAMPLE` bytes at its start, middle and end (all of it when that is as much): two
    recordings of one length differ there (a clip's leading silence can be the same, its middle and end are not);
    where it cannot be read, its path, like no other file's (`_digest`)."""
    if size <= 3 * SAMPLE:
        return _digest(path)
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for at in (0, size // 2, size - SAMPLE):
                fh.seek(at)
                h.update(fh.read(SAMPLE))
    except OSError:
        return path.encode()
    return h.digest()


def _digest(path: str) -> bytes:
    """sha256 of a file's bytes; where it cannot be read, its path, like no other file's (decoding names the fault)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
    except OSError:
        return path.encode()
    return h.digest()
