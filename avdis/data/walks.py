"""The parts a media file is made of, walked one after another as `whole` checks a file: an MP4's top-level boxes, a
CAF's chunks, an AVI's RIFF chunks, an MPEG transport stream's packets, an Ogg file's pages, an FLV file's tags, MPEG
audio and AAC (ADTS) frames, a Matroska segment's elements. Each says how long it is, so a file cut short ends inside
the last; bytes a tool appended read as none.

One rule for a file that ends inside a part's header: it is cut short where what it holds of that header is what such
a header holds there, down to a lone first byte where that byte tells (a transport stream packet's sync byte "G", an
AVI RIFF chunk's "R", an Ogg page's "O", an FLV tag's type, a frame's sync byte, a Matroska ID's first byte, a CAF
chunk's or an MP4 box's type's first letters). A copy cut a byte past the end of a part holds the same bytes as a whole
file with that byte appended, and copies are cut there (one position in a part's length) far more often than a tool
appends a lone sync byte or type letter: tools append text, zeros or tags, told apart by the bytes that follow. Bytes
that tell nothing (an MP4 box's size, an M2TS packet's arrival time, zeros) stay unseen, as a cut exactly between two
parts does, and so does a tail where the file says it ended (an FLV's metadata filesize). A 64-bit size (a CAF
chunk's, an MP4 box's) tells where it is held, in part too: its first bytes held, the rest taken as 0, give the least
it may be, and from `BIG_PART` up it is no part's (text read as one: "info ok\n" appended to a CAF).
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Callable, Iterator
from typing import BinaryIO

# Bytes no part of a media file runs to (256 TiB): more than any one file an object store (S3: 50 TB) or ext4 (16 TiB)
# holds, and less than any 64-bit size whose first byte is not 0, as text's never is (a tab: 2^59)
BIG_PART = 1 << 48
FIRST_BOXES = {b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip"}  # how an MP4 or a QuickTime .mov begins
# The top-level boxes of an MP4 (ISO BMFF, QuickTime, fragmented): only one of these running past the end is a cut;
# another type there is bytes a tool appended (text, a vendor's trailer) that happen to read as a box's size and type
_MP4_BOXES = FIRST_BOXES | {b"moof", b"mfra", b"sidx", b"ssix", b"styp", b"emsg", b"prft", b"uuid", b"meta", b"pdin",
                            b"pnot"}


def mp4_box_past(fh: BinaryIO, size: int) -> tuple[str, int, int] | None:
    """("MP4 box", the byte it runs to, the size) for the top-level box of an MP4 that runs past the end of the file,
    unless an index (moov) listing every packet came whole before it: `whole.index_past_end` then tells which track lost
    its end. A fragmented MP4's index (its moov holds an mvex: ffmpeg's -movflags frag_keyframe, a recorder's) lists
    only the fragments read so far: a copy cut short in a later one was a shorter clip. ("MP4 box header", ...) where
    the file ends inside the header of a box of such a type, its type begun. None also where no box starts, or one
    of a type no MP4 holds at its top runs past the end (bytes a tool appended)."""
    at, indexed = 0, False
    while at + 8 <= size:
        fh.seek(at)
        box = fh.read(16)
        length, kind, header = int.from_bytes(box[:4], "big"), box[4:8], 8
        if length == 1:  # a 64-bit size follows the type (as far as the file holds it, the rest taken as 0)
            length, header = int.from_bytes(box[8:16].ljust(8, b"\0"), "big"), 16
            if length >= BIG_PART:
                return None
            if len(box) < 16:  # the file ends inside it
                return None if indexed or kind not in _MP4_BOXES else ("MP4 box header", at + 16, size)
        if length < 8 or not all(32 <= c < 127 for c in kind):  # 0: the box runs to the end of the file, as it is
            return None
        if at + length > size:
            return None if indexed or kind not in _MP4_BOXES else ("MP4 box", at + length, size)
        if kind in (b"moov", b"moof"):
            indexed = kind == b"moov" and b"mvex" not in _mp4_children(fh, at + header, at + length)
        at += length
    fh.seek(at)
    head = fh.read(8)  # the file ends inside a box's header: told by its type's first letters (a size tells nothing)
    length = int.from_bytes(head[:4], "big")
    if indexed or len(head) <= 4 or not (length >= 8 or length == 1):
        return None
    header = 16 if length == 1 else 8
    return ("MP4 box header", at + header, size) if any(kind.startswith(head[4:]) for kind in _MP4_BOXES) else None


def mp4_unindexed(fh: BinaryIO, size: int) -> bool:
    """Whether an MP4's top-level boxes, up to the end of the file or to one that runs past it or to it (size 0),
    hold no index (moov). ffmpeg writes an MP4's moov after its media unless made for streaming, its mdat's size 0
    (to the end of the file) until then: a recording stopped before it was closed, or a copy of one cut short before
    its moov, holds none, and ffmpeg can neither read nor re-encode it."""
    at = 0
    while at + 8 <= size:
        fh.seek(at)
        box = fh.read(16)
        length = int.from_bytes(box[:4], "big")
        if box[4:8] == b"moov":
            return False
        if length == 1 and len(box) == 16:
            length = int.from_bytes(box[8:16], "big")
        if length < 8:
            break
        at += length
    return True


def _mp4_children(fh: BinaryIO, at: int, end: int) -> list[bytes]:
    """The types of the boxes from `at` to `end` (a box's children)."""
    kinds = []
    while at + 8 <= end:
        fh.seek(at)
        box = fh.read(8)
        kinds.append(box[4:8])
        at += max(8, int.from_bytes(box[:4], "big"))
    return kinds


# The chunk types Apple's Core Audio Format defines
_CAF_CHUNKS = {b"desc", b"data", b"pakt", b"chan", b"kuki", b"strg", b"mark", b"regn", b"inst", b"midi", b"ovvw",
               b"peak", b"edct", b"uuid", b"info", b"umid", b"free"}


def caf_chunk_past(fh: BinaryIO, size: int) -> tuple[str, int, int] | None:
    """("CAF chunk", the byte it runs to, the size) for the chunk of a CAF file that runs past the end of the file
    (its header: the file ends inside a chunk's header whose type begins as a CAF chunk's does, and whose size, as
    far as held, is under `BIG_PART`, or a data chunk's -1); None for a whole one, or where a chunk's size is left open (-1: its data runs
    to the end of the file), no chunk starts, or one of a type CAF does not define, or of a size from `BIG_PART` up,
    runs past the end (bytes a tool appended: text reads as a chunk, "info ok\n" as an info chunk of 2^61 bytes)."""
    at, kind = 8, b""  # after its type and version
    while at < size:
        fh.seek(at)
        chunk = fh.read(12)
        kind, held = chunk[:4], chunk[4:12]
        length = int.from_bytes(held.ljust(8, b"\0"), "big", signed=True)  # as far as held, the rest 0
        if len(chunk) < 12 and kind == b"data" and not held.strip(b"\xff"):  # -1 begun: its size left open
            length = 0
        if not 0 <= length < BIG_PART or not all(32 <= c < 127 for c in kind):  # no chunk (bytes a tool appended)
            return None
        if len(chunk) < 12:  # the file ends inside its header: told by its type's first letters and its size's
            return ("CAF chunk header", at + 12, size) if any(k.startswith(kind) for k in _CAF_CHUNKS) else None
        at += 12 + length
    return ("CAF chunk", at, size) if at > size and kind in _CAF_CHUNKS else None


def avi_riff(fh: BinaryIO, at: int) -> tuple[int, bool] | None:
    """(where the RIFF chunk of an AVI at `at` ends; whether the file ends inside its 12-byte header first: then where
    that ends). An AVI over 1 GiB (OpenDML) holds a RIFF 'AVI ' chunk, then one RIFF 'AVIX' chunk after another, each
    of its own size, the first whole once the next is written. None where no such chunk starts (bytes a tool
    appended)."""
    fh.seek(at)
    head = fh.read(12)
    riff = b"RIFF" + head[4:8] + (b"AVI " if at == 0 else b"AVIX")
    if not riff.startswith(head):
        return None
    return (at + 12, True) if len(head) < 12 else (at + 8 + int.from_bytes(head[4:8], "little"), False)


TS_SYNC = 0x47  # the byte each packet of an MPEG transport stream begins with (after an M2TS packet's arrival time)
_TS_LOOK_BACK = 256  # packets before the last whose PIDs a packet the file ends inside must be among


def ts_packet_past(fh: BinaryIO, size: int, packet: int) -> tuple[str, int, int] | None:
    """("MPEG-TS packet", the byte it runs to, the size) for an MPEG transport stream of `packet`-byte packets (.ts:
    188; .m2ts, .mts as a camcorder writes them: 192, a 4-byte arrival time first) whose last packet runs past the end
    of the file, as a copy cut short leaves it, or where the packets fill the file but the last PES packet of a track
    declares more than they hold (`_pes_past`: a cut exactly between two packets of audio, or of video whose writer
    declares its length; one inside a video PES packet of length unsaid, ffmpeg's, is told by the frame the decoder
    patches up, `media.decode_video`); None for a whole file, or where what follows the last whole packet is no
    packet's start (bytes a tool appended): packets do not precede it, or it holds another sync byte, or a PID none of
    the packets before it has (as far as held: its first 5 bits, where the file ends after the PID's first byte). An
    M2TS packet's first 4 bytes alone say nothing (ffmpeg's arrival times jump about): a cut there stays unseen, as
    "\n" appended does."""
    sync = packet - 188
    last = size - size % packet  # where a packet the file ends inside starts
    look = min(_TS_LOOK_BACK, last // packet) * packet
    if not look:
        return None
    fh.seek(last - look)
    before, tail = fh.read(look), fh.read(packet)
    if any(before[at + sync] != TS_SYNC for at in range(0, look, packet)):
        return None
    if last == size:
        return _pes_past(before, sync, size)
    pids = {int.from_bytes(before[at + sync + 1 : at + sync + 3], "big") & 0x1FFF for at in range(0, look, packet)}
    if tail[sync : sync + 1] != bytes([TS_SYNC]):
        return None
    held = tail[sync + 1 : sync + 3]  # its PID (13 bits after 3 flags), as far as the file holds it
    drop = 8 * (2 - len(held))  # the PID's bits not held
    if (int.from_bytes(held.ljust(2, b"\0"), "big") & 0x1FFF) >> drop not in {pid >> drop for pid in pids}:
        return None
    return "MPEG-TS packet", last + packet, size


def _pes_past(packets: bytes, sync: int, size: int) -> tuple[str, int, int] | None:
    """("MPEG-TS PES packet", the byte it runs to at the least, the size) where the last PES packet of a track that
    starts among `packets` (the file's last, ending at `size`) declares more bytes than its packets hold: a copy cut
    exactly between two packets, inside a PES packet of audio, or of video where its writer declares its length
    (ffmpeg leaves a video's unsaid: 0)."""
    packet, held = 188 + sync, {}  # a track's PID: [bytes its last PES declares, bytes held of it]
    for at in range(sync, len(packets), packet):
        flags = packets[at + 3] >> 4 & 3  # 1: a payload, 3: an adaptation field first, 2: no payload
        start = at + (4 if flags == 1 else 5 + packets[at + 4])
        payload = packets[start : at + 188] if flags & 1 and start <= at + 188 else b""
        pid = int.from_bytes(packets[at + 1 : at + 3], "big") & 0x1FFF
        if packets[at + 1] & 0x40 and payload[:3] == b"\0\0\1" and len(payload) >= 6:  # a PES packet starts
            held[pid] = [6 + int.from_bytes(payload[4:6], "big"), len(payload)]
        elif pid in held:
            held[pid][1] += len(payload)
    short = max((declared - have for declared, have in held.values() if declared > 6), default=0)
    return ("MPEG-TS PES packet", size - (-short // 184) * packet, size) if short > 0 else None


def ogg_page(fh: BinaryIO, at: int) -> tuple[int, bool] | None:
    """(where the Ogg page at `at` ends: its header, segment table and body; whether the file ends inside its header
    or segment table first, which say how long it is: then where they end). None where no page starts there (bytes a
    tool appended, which ffmpeg passes over)."""
    fh.seek(at)
    head = fh.read(27)
    if not b"OggS".startswith(head[:4]):
        return None
    if len(head) < 27:
        return at + 27, True
    table = fh.read(head[26])
    if len(table) < head[26]:
        return at + 27 + head[26], True
    return at + 27 + head[26] + sum(table), False


FLV_BIG_TAG = 1 << 18  # bytes of data in an FLV tag (a key frame) that a tag may hold whatever the tags before it held


class FlvTags:
    """Walks the tags of an FLV file of `size` bytes (`last_unit_past`'s `unit_end`): where the tag at `at` ends (its
    header, data and the size of it that follows); whether the file ends inside its header first (then where that
    ends). None where no tag starts there: bytes a tool appended, text too (b"Hi" read as an audio tag), told by what
    the header holds of them: a first byte other than an unencrypted audio, video or script data tag's (FLV's
    reserved and filter bits 0), a stream ID other than 0, and for a tag that would run past the end, a timestamp
    2^24 ms (4.7 h) or more after the latest tag's (one that fits may jump: a stream's media may start hours in).
    Nor does one start where the file ended as written: the size its metadata (onMetaData's filesize, which ffmpeg
    writes once the file is done) declares, where a few bytes of text held too little of a header to tell ("\tHi\n":
    a video tag's type and a size). Where the metadata says no size (a pipe, a live stream), a header the file ends
    before its timestamp is held is a tag's only where its size, as far as held, is at most `FLV_BIG_TAG` or 4 times
    the largest tag's before it (text after a tab reads as a size of 576 KiB or more)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.latest: int | None = None  # the latest tag's timestamp (ms)
        self.written: int | None = None  # the file's size as written, its metadata says (0 or none: unsaid)
        self.largest = 0  # the largest tag's data size so far

    def __call__(self, fh: BinaryIO, at: int) -> tuple[int, bool] | None:
        fh.seek(at)
        head = fh.read(11)
        if at == self.written or head[0] not in (8, 9, 18) or head[8:11].strip(b"\0"):
            return None
        length = int.from_bytes(head[1:4].ljust(3, b"\0"), "big")  # as far as the file holds it
        if len(head) < 8 and length > max(FLV_BIG_TAG, 4 * self.largest):
            return None
        end = at + 11 + (length + 4 if len(head) == 11 else 0)
        if head[0] == 18 and self.written is None and end <= self.size:
            self.written = _flv_file_size(fh.read(end - at - 15))
        self.largest = max(self.largest, length if end <= self.size else 0)
        if len(head) >= 8:
            stamp = int.from_bytes(head[4:7], "big") | head[7] << 24  # its fourth byte the highest
            if end > self.size and self.latest is not None and stamp - self.latest >= 1 << 24:
                return None
            self.latest = stamp if self.latest is None else max(self.latest, stamp)
        return end, len(head) < 11


def _flv_file_size(script: bytes) -> int | None:
    """The filesize an FLV's script data (its onMetaData: AMF0, each name's length, the name, then a number's marker
    and 8-byte double) declares; None where it says none, or 0 (ffmpeg's while it writes, kept where it could not
    seek back: a pipe, a live stream)."""
    found = re.search(rb"\x00\x08filesize\x00(.{8})", script, re.DOTALL)
    value = struct.unpack(">d", found[1])[0] if found else 0.0
    return int(value) if 0 < value < 1 << 53 and value == int(value) else None


# MPEG audio (MP3, MP2): kbit/s by (MPEG-1 or not, layer) and the header's bitrate index; Hz by its version bits
_KBPS = {(True, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
         (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
         (True, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
         (False, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
         (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)}
_KBPS[False, 3] = _KBPS[False, 2]
_HZ = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}  # MPEG-1, 2, 2.5


def mpeg_frame_length(header: bytes, first: bytes) -> int | None:
    """Bytes in the MPEG audio frame whose 4-byte header is `header`; None where it is no frame of the stream whose
    first frame's header is `first` (another version, layer or sample rate: a tag, bytes a tool appended) or one whose
    length its header does not give (free format)."""
    if len(header) < 4 or header[0] != 0xFF or header[1] & 0xE0 != 0xE0 or len(first) < 4:
        return None
    if (header[1] ^ first[1]) & 0xFE or (header[2] ^ first[2]) & 0x0C:
        return None
    version, layer = (header[1] >> 3) & 3, 4 - ((header[1] >> 1) & 3)
    index, rate, pad = header[2] >> 4, (header[2] >> 2) & 3, (header[2] >> 1) & 1
    if version == 1 or layer == 4 or index in (0, 15) or rate == 3:
        return None
    bits, hz = _KBPS[version == 3, layer][index] * 1000, _HZ[version][rate]
    if layer == 1:
        return (12 * bits // hz + pad) * 4
    return (144 if layer == 2 or version == 3 else 72) * bits // hz + pad


def mpeg_frame(fh: BinaryIO, at: int, first: bytes) -> tuple[int, bool] | None:
    """(where the MPEG audio frame at `at` ends; whether the file ends inside its 4-byte header first: then where
    that ends). None where no frame of the stream starts there (an ID3v1 or APE tag, bytes a tool appended)."""
    return _frame(fh, at, first, 4, 2, mpeg_frame_length)


def id3_between(fh: BinaryIO, at: int, size: int) -> int:
    """Where an ID3v2 tag at `at` in a file of `size` bytes ends, for the tag between MP3s joined end to end (cat a.mp3
    b.mp3), which ffmpeg and players pass over to the frames after it; 0 where none is told there: no header ffmpeg
    takes for a tag's (`id3_told`), a tag that runs past the end of the file, or one after whose end (and any zeros a
    tagger left, which its size does not count: `past_zeros`) neither the file ends nor another tag or a frame of any
    MPEG audio stream starts: a size that is garbage, by which a walk or a decoder would pass over frames."""
    fh.seek(at)
    end = at + id3_told(fh.read(10))
    if end == at or end > size:
        return 0
    fh.seek(on := past_zeros(fh, end))
    after = fh.read(10)
    return end if on == size or id3_end(after) or mpeg_frame_length(after[:4], after[:4]) is not None else 0


def id3_told(head: bytes) -> int:
    """`id3_end` of an ID3v2 tag whose header ffmpeg takes for one (ff_id3v2_match: its version and revision bytes
    not 0xFF, its size bytes under 0x80); else 0."""
    if len(head) < 10 or head[3] == 0xFF or head[4] == 0xFF or any(b & 0x80 for b in head[6:10]):
        return 0
    return id3_end(head)


def past_zeros(fh: BinaryIO, at: int) -> int:
    """Where the zero bytes from `at` end (a block of `SCAN_BYTES` at most is looked at)."""
    fh.seek(at)
    block = fh.read(SCAN_BYTES)
    return at + len(block) - len(block.lstrip(b"\0"))


class Mp3Units:
    """Walks an MP3's frames (`last_unit_past`'s `unit_end`) from its first, whose 4-byte header is `first`: where
    the frame of its stream at `at` ends (`mpeg_frame`), and past what ffmpeg and players pass over or play on
    through in MP3s joined end to end (cat a.mp3 b.mp3): the second one's ID3v2 tag (`id3_between`, and zeros after
    it), and where the second is another stream (another sample rate or MPEG version), its frames, from a frame of it
    that another follows or that ends the file (`confirmed_frame`, as `mpeg_frames_resume` finds one): `first`
    becomes its header. A tag that runs past the end of the file, no frames after its header, is where a copy was
    cut short (the walk's last unit). `tag` says whether the last unit was a tag. None where none of these starts at
    `at` (an ID3v1 or APE tag, bytes a tool appended, a tag whose size is garbage)."""

    def __init__(self, first: bytes) -> None:
        self.first = first
        self.tag = False

    def __call__(self, fh: BinaryIO, at: int) -> tuple[int, bool] | None:
        self.tag = False
        unit = mpeg_frame(fh, at, self.first)
        if unit is not None:
            return unit
        size = os.fstat(fh.fileno()).st_size
        if end := id3_between(fh, at, size):
            self.tag = True
            return past_zeros(fh, end), False
        fh.seek(at)
        header = fh.read(10)
        if (tag := id3_told(header)) and at + tag > size and mpeg_frames_resume(fh, at + 10, size, None) is None:
            self.tag = True
            return at + tag, False
        unit = confirmed_frame(fh, at, header[:4], size)
        if unit is not None:
            self.first = header[:4]
        return unit


def mp3_silent(fh: BinaryIO) -> bool:
    """Whether an MP3 from `fh`'s start is digital silence: every layer III frame's granules carry no coded bits
    (part2_3_length 0), as an encoder writes silence, so two as long as each other hold the same bytes. False for a
    file that is no MP3 or holds no frame. The frames are walked as `Mp3Units` walks them, as a decoder reads them:
    past the ID3v2 tag between two files joined end to end (cat a.mp3 b.mp3), on into the second's frames where it is
    another stream (another sample rate or MPEG version); other bytes that are no frame (a tag, zeros a tool padded it
    with) are passed over to where the frames start again (`mpeg_frames_resume`): sound after them is no silence. The
    walk starts where the frames do (`mp3_frames_start`: past zeros or a second tag a tagger left after the ID3 one
    too)."""
    size = fh.seek(0, 2)
    at = mp3_frames_start(fh, size)
    if at is None:
        return False
    fh.seek(at)
    units = Mp3Units(fh.read(4))
    frames = 0
    while at is not None and at < size:
        fh.seek(at)
        header = fh.read(4)
        length = mpeg_frame_length(header, units.first)
        if length is None:
            unit = units(fh, at)  # the tag between joined files (passed over), or another stream's first frame
            if unit is None:
                at = mpeg_frames_resume(fh, at, size, units.first)
            elif units.tag:
                at = unit[0]
            continue  # at another stream's frame, `units.first` its header now: it is read as the frames before
        if (header[1] >> 1) & 3 != 1:  # layer I or II: no granules
            return False
        mpeg1, channels = (header[1] >> 3) & 3 == 3, 1 if header[3] >> 6 == 3 else 2
        # the side info after the header (and its CRC): its bytes, where the first part2_3_length starts, in bits,
        # and the bits between one granule's (of a channel) and the next's
        side, start, per = ((17, 18, 59) if channels == 1 else (32, 20, 59)) if mpeg1 else \
            ((9, 9, 63) if channels == 1 else (17, 10, 63))
        fh.seek(at + 4 + 2 * (not header[1] & 1))
        bits = fh.read(side)
        if len(bits) < side:
            break
        value = int.from_bytes(bits, "big")
        if any(value >> (8 * side - start - i * per - 12) & 0xFFF for i in range(channels * (2 if mpeg1 else 1))):
            return False
        frames, at = frames + 1, at + length
    return frames > 0


SCAN_BYTES = 1 << 20  # bytes read at a time where a file is searched (for frames, zeros, a string)


def mpeg_frames_resume(fh: BinaryIO, at: int, size: int, first: bytes | None) -> int | None:
    """Where frames of the stream whose first frame's header is `first` (None: of any stream, as where an MP3's
    frames start past zeros or a second tag after its ID3 one) start again after `at` in a file of `size` bytes: two in
    a row, or one that ends the file; None where they do not. One frame header alone proves nothing: random bytes hold
    one every ~150 KB or so."""
    # any stream: a version, layer and bitrate a header may hold (bytes of 0xFF, flash memory never written, hold none)
    sync = re.compile(b"\xff[\xe2-\xe7\xf2-\xf7\xfa-\xff][\x10-\xef]" if first is None else
                      b"\xff[" + re.escape(bytes([first[1] & 0xFE, first[1] | 1])) + b"]")
    for start in range(at, size, SCAN_BYTES):
        fh.seek(start)
        block = fh.read(SCAN_BYTES + 2)  # a header's first byte at the block's last sees its next two
        for found in sync.finditer(block):
            fh.seek(start + found.start())
            stream = first or fh.read(4)  # a header at the block's end runs past it
            if confirmed_frame(fh, start + found.start(), stream, size) is not None:
                return start + found.start()
    return None


def confirmed_frame(fh: BinaryIO, at: int, stream: bytes, size: int) -> tuple[int, bool] | None:
    """The whole MPEG audio frame of `stream` at `at` in a file of `size` bytes (`mpeg_frame`) where another of the
    stream follows it or it ends the file; else None. One frame header alone proves nothing: random bytes hold one
    every ~150 KB or so."""
    unit = mpeg_frame(fh, at, stream)
    if unit is None or unit[1] or unit[0] > size:
        return None
    after = mpeg_frame(fh, unit[0], stream) if unit[0] < size else None
    return unit if unit[0] == size or (after is not None and not after[1]) else None


def mp3_frames_start(fh: BinaryIO, size: int) -> int | None:
    """Where an MP3's frames start in a file of `size` bytes: right after its ID3v2 tags (`id3_tags_end`), or, where
    the bytes there are no frame (zeros a tagger left, which a tag's size does not count), where frames start past them
    (`mpeg_frames_resume` of any stream), as ffmpeg finds them; None where none do. The search starts past every tag:
    a tag's data may hold bytes that read as frames."""
    at = id3_tags_end(fh)
    fh.seek(at)
    header = fh.read(4)
    return at if mpeg_frame_length(header, header) is not None else mpeg_frames_resume(fh, at, size, None)


def id3_tags_end(fh: BinaryIO) -> int:
    """Where the ID3v2 tags at the head of a file end, each right after the one before (ffmpeg reads on while another
    follows)."""
    at = 0
    while True:
        fh.seek(at)
        tag = id3_end(fh.read(10))
        if not tag:
            return at
        at += tag


def adts_frame_length(header: bytes, first: bytes) -> int | None:
    """Bytes in the AAC frame whose 7-byte ADTS header is `header` (it counts itself); None where it is no frame of
    the stream whose first frame's header is `first` (another profile or sample rate: bytes a tool appended)."""
    if len(header) < 7 or header[0] != 0xFF or header[1] & 0xF6 != 0xF0 or header[1] != first[1]:
        return None
    if (header[2] ^ first[2]) & 0xFC:
        return None
    length = (header[3] & 0x03) << 11 | header[4] << 3 | header[5] >> 5
    return length if length >= 7 else None


def adts_frame(fh: BinaryIO, at: int, first: bytes) -> tuple[int, bool] | None:
    """(where the AAC frame at `at` ends; whether the file ends inside its 7-byte ADTS header first: then where that
    ends). None where no frame of the stream starts there."""
    return _frame(fh, at, first, 7, 3, adts_frame_length)


def _frame(fh: BinaryIO, at: int, first: bytes, header: int, sync: int,
           length_of: Callable[[bytes, bytes], int | None]) -> tuple[int, bool] | None:
    """`mpeg_frame` and `adts_frame`: a frame whose `header` bytes say its length (`length_of`, None for no frame of
    the stream whose first frame's header is `first`); one the file ends inside its header is told by the first
    `sync` bytes it holds of them."""
    fh.seek(at)
    head = fh.read(header)
    if len(head) < header:
        return (at + header, True) if head[:sync] == first[: len(head[:sync])] else None
    length = length_of(head, first)
    return None if length is None else (at + length, False)


# The elements of a Matroska segment, and those of a cluster (a live writer leaves the sizes of both open: their
# children follow one another, and a segment's element after a cluster's children ends the cluster); Void and CRC-32
# may sit in either. Any other ID (bytes a tool appended, a second file joined on) ends the walk
_CLUSTER, _TRACKS, _VOID, _CRC32, _BLOCK_GROUP, _SIMPLE_BLOCK = 0x1F43B675, 0x1654AE6B, 0xEC, 0xBF, 0xA0, 0xA3
_SEGMENT_IDS = {_CLUSTER, _TRACKS, 0x114D9B74, 0x1549A966, 0x1C53BB6B, 0x1254C367, 0x1043A770, 0x1941A469}
_BLOCKS = {_SIMPLE_BLOCK, _BLOCK_GROUP}
# A cluster's timestamp (its first child, RFC 9559 says), position and previous size, which writers put before its
# blocks, and its blocks
_CLUSTER_IDS = {0xE7, 0xA7, 0xAB} | _BLOCKS


class MatroskaElements:
    """Walks the elements of a Matroska segment of open size (`last_unit_past`'s `unit_end`): where the element at
    `at` ends, or where the children of a cluster of open size start; whether the file ends inside its ID or size
    first (then where those end). None where no element starts there: an ID the level does not hold, or one whose
    first bytes are not what such an element holds (a block of no track in the segment's Tracks, reserved flag bits
    set; a CRC-32 of other than 4 bytes, a number of more than 8, a Void not of zeros; a cluster's timestamp, position
    or previous size after its blocks; a CRC-32 other than its parent's first child, RFC 8794 says; a Void among a
    cluster's blocks, where writers put none): bytes a tool appended, which may begin with an ID's byte (text too:
    "爱", E7 88 B1, read as an 8-byte timestamp; "쀿", EC 80 BF, as a Void of no bytes, then a CRC-32's ID); also
    another element of open size (its end unknown)."""

    def __init__(self) -> None:
        self.tracks: set[int] = set()  # the track numbers its Tracks lists
        self.in_cluster = False  # inside a cluster of open size
        self.blocks = False  # a block of that cluster read
        self.first = True  # nothing read yet at this level (the segment's, or that cluster's): where a CRC-32 may be

    def __call__(self, fh: BinaryIO, at: int) -> tuple[int, bool] | None:
        fh.seek(at)
        head = fh.read(12)
        if not head or head[0] < 0x10:  # an ID is 1 to 4 bytes wide
            return None
        width = 9 - head[0].bit_length()
        cluster = (_BLOCKS if self.blocks else _CLUSTER_IDS | {_VOID}) if self.in_cluster else {_VOID}
        ids = _SEGMENT_IDS | cluster | ({_CRC32} if self.first else set())
        if len(head) < width:
            known = any(i.to_bytes(4, "big").lstrip(b"\0").startswith(head) for i in ids)
            return (at + width, True) if known else None
        ident = int.from_bytes(head[:width], "big")
        if ident not in ids:
            return None
        self.in_cluster = self.in_cluster and ident not in _SEGMENT_IDS
        length, start = vint(head, width)
        if start == width:  # the file ends before or inside its size (or no size starts there)
            if len(head) == width:
                return at + width + 1, True
            return (at + width + 9 - head[width].bit_length(), True) if head[width] else None
        if length is None:
            self.in_cluster, self.blocks = ident == _CLUSTER, False
            self.first = self.in_cluster
            return (at + start, False) if self.in_cluster else None
        fh.seek(at + start)
        body = fh.read(length if ident == _TRACKS else min(length, 16))
        if not self._holds(ident, length, body):
            return None
        if ident == _TRACKS:
            self.tracks = {int.from_bytes(number, "big") for kind, entry in _ebml_children(body) if kind == 0xAE
                           for field, number in _ebml_children(entry) if field == 0xD7}
        self.blocks = self.blocks or ident in _BLOCKS
        self.first = False
        return at + start + length, False

    def _holds(self, ident: int, length: int, body: bytes) -> bool:
        """Whether an element `ident` of `length` bytes may begin with `body` (what the file holds of its first)."""
        if ident == _CRC32:
            return length == 4
        if ident in (0xE7, 0xA7, 0xAB):  # unsigned numbers
            return length <= 8
        if ident == _VOID:  # writers fill it with zeros
            return not body.strip(b"\0")
        if ident == _SIMPLE_BLOCK:
            return self._block(body, 0x70)
        if ident == _BLOCK_GROUP and body:  # its Block first, as ffmpeg writes it
            at = vint(body, 1)[1]
            return body[0] == 0xA1 and (at == 1 or self._block(body[at:], 0xF0))
        return True

    def _block(self, body: bytes, reserved: int) -> bool:
        """Whether `body` may begin a block: its track number (an EBML number) one the segment's Tracks lists, then a
        16-bit timestamp, then flags whose `reserved` bits are 0."""
        if not body:
            return True
        width = 9 - body[0].bit_length()
        if width > 8 or len(body) < width:
            return width <= 8
        number = int.from_bytes(body[:width], "big") & ((1 << (7 * width)) - 1)
        return number in self.tracks and (len(body) <= width + 2 or not body[width + 2] & reserved)


def _ebml_children(data: bytes) -> list[tuple[int, bytes]]:
    """(ID, body) of the EBML elements one after another in `data` (a parent's body), up to one that does not fit."""
    children, at = [], 0
    while at < len(data) and data[at] >= 0x10:
        width = 9 - data[at].bit_length()
        length, start = vint(data, at + width)
        if length is None or start + length > len(data):
            break
        children.append((int.from_bytes(data[at : at + width], "big"), data[start : start + length]))
        at = start + length
    return children


def last_unit_past(fh: BinaryIO, size: int, at: int,
                   unit_end: Callable[[BinaryIO, int], tuple[int, bool] | None], what: str) -> tuple[str, int, int] | None:
    """The pages, tags, frames or elements (`unit_end`'s) from `at` walked to the end of the file: (`what`, or its
    header where the file ends inside that, the byte it runs to, the size) for the last when it runs past the end;
    else None (also where something else follows)."""
    while at < size:
        unit = unit_end(fh, at)
        if unit is None:
            return None
        at, header = unit
        if at > size:
            return (f"{what} header" if header else what), at, size
    return None


def vint(data: bytes, at: int) -> tuple[int | None, int]:
    """An EBML size at `at` and where what it sizes starts; None for a size left open (every value bit set) or one
    that runs past `data` (what was read of the file's head: a size read in part would be wrong)."""
    if at >= len(data) or not data[at]:
        return None, at
    width = 9 - data[at].bit_length()
    if at + width > len(data):
        return None, at
    value = int.from_bytes(data[at : at + width], "big") & ((1 << (7 * width)) - 1)
    return (None if value == (1 << (7 * width)) - 1 else value), at + width


def wav_chunks(fh: BinaryIO) -> Iterator[tuple[bytes, int]]:
    """Each chunk of a RIFF WAV from `fh`'s start, as (its id, its size), `fh` at its first byte; none for a file that
    is no RIFF WAV. The walk goes on from the chunk's end (padded to an even size), whatever the caller read of it.
    An RF64 or BW64 file (a WAV of 64-bit sizes, as a field or broadcast recorder writes, or a WAV over 4 GiB) is
    walked alike, its data chunk's size the one its ds64 chunk holds where its own is 0xFFFFFFFF (ffmpeg, which reads
    either as "wav", reads one cut short to its end as it does a WAV)."""
    head = fh.read(12)
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64", b"BW64") or head[8:12] != b"WAVE":
        return
    data_size = None  # the ds64 chunk's, for an RF64's or BW64's data chunk
    while len(chunk := fh.read(8)) == 8:
        kind, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        start = fh.tell()
        if kind == b"ds64" and head[:4] != b"RIFF" and size >= 16:
            data_size = struct.unpack("<Q", fh.read(16)[8:16])[0]
            fh.seek(start)
        elif kind == b"data" and size == 0xFFFFFFFF and data_size is not None:
            size = data_size  # 0 where a writer into a pipe left it open, as a WAV's
        yield kind, size
        fh.seek(start + size + size % 2)


def riff_chunks_to_end(fh: BinaryIO, at: int, size: int) -> bool:
    """Whether the bytes from `at` to the end of a file of `size` bytes are whole RIFF chunks (or none): a LIST a
    writer appended to a WAV header whose data chunk's length it left open, which ffmpeg reads as samples, but which
    holds none. Samples read as a chunk's id and size seldom, and as a run of them to the end of the file never."""
    while at < size:
        fh.seek(at)
        chunk = fh.read(8)
        if len(chunk) < 8 or not all(32 <= c < 127 for c in chunk[:4]):
            return False
        length = int.from_bytes(chunk[4:], "little")
        at += 8 + length
        at += length % 2 if at < size else 0  # the last chunk's pad byte may be left out
    return at == size


def id3_end(head: bytes) -> int:
    """Where the audio starts after an ID3v2 tag at the head of a file (0 without one)."""
    if head[:3] != b"ID3" or len(head) < 10:
        return 0
    size = sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(head[6:10]))
    return 10 + size + (10 if head[5] & 0x10 else 0)  # the footer flag adds a copy of the header at the end
