"""The adapter for a corpus listed in a ground_truth.csv: a generated one, or the user's own.

synthetic (`avdis.data.synth`), or a corpus of the user's own: labels from its `ground_truth.csv`, any
emotion word (case ignored: IEMOCAP's `frustrated` is as good a class as `happy`). A listed file holding the
same bytes as one listed before it (a copy under another name) is that one's copy, no clip of its own. A row
whose speaker or emotion is a placeholder (MSP-Podcast's speaker `Unknown`, IEMOCAP's emotion `xxx`) is a reject.
"""

from __future__ import annotations

import csv
import io
import os
import re
import unicodedata
from dataclasses import replace
from pathlib import Path

from avdis.data.corpora.named import named_as
from avdis.data.corpora.records import GROUND_TRUTH, MEDIA, ClipRecord, CorpusError, Reject, Scan
from avdis.data.corpora.sniff import same_bytes
from avdis.data.corpora.walk import is_file


_TRUTH_COLUMNS = ("file", "clip_id", "speaker", "emotion")  # `intensity`, where present, is kept as metadata
# columns that place a row's clip at a time within its file (a session's segments, as an annotation tool exports
# them), which avdis does not read: a row's clip is its whole file, of which the features take the centre window
_TIME_COLUMNS = frozenset(f"{word}{unit}"
                          for word in ("start", "end", "stop", "begin", "onset", "offset", "tmin", "tmax", "start_time",
                                       "end_time", "begin_time", "stop_time")
                          for unit in ("", "_s", "_sec", "_secs", "_seconds", "_ms"))


_SEP_HINT = re.compile(r'"?sep=(?P<sep>[^\r\n"])"?[ \t]*(?:\r\n|\r|\n|$)', re.IGNORECASE)  # Excel's `sep=;` line


# characters that show nothing, which str.strip keeps: a zero-width space pasted from a web page or a document, a
# word joiner, a byte order mark a file joined to another left inside it
_UNSEEN = "\u200b\u200c\u200d\u2060\ufeff"


def _bare(cell: str) -> str:
    """A ground truth's cell without the spaces around it, nor characters that show nothing (`_UNSEEN`): `sad` and
    `sad` with a zero-width space pasted after it were two classes that read alike in the summary, and a file named
    after one was 'listed in ground_truth.csv but missing' beside itself 'not listed'."""
    bare = cell.strip()
    while bare and (bare[0] in _UNSEEN or bare[-1] in _UNSEEN):
        bare = bare.strip(_UNSEEN).strip()
    return bare


def _column(name: str) -> str:
    """A ground truth's column name as avdis reads it: without its case, the spaces around it and characters that show
    nothing (`_bare`), and with the spaces and hyphens inside it as underscores (`Clip ID` is clip_id)."""
    return re.sub(r"[\s-]+", "_", _bare(name).lower())


def _table(text: str) -> tuple[list[str], list[tuple[int, dict[str, str], list[str]]]]:
    """A ground truth's header and rows, by column name, each with its number as a spreadsheet shows it (the header's
    is 1), which a reject names, and the cells it has past the header's columns. Names are read without the spaces
    around them and their case, spaces and hyphens inside them as underscores (`File`, `Clip ID`, `clip-id` as a
    person writes them: `_column`), cells separated by commas, else by
    the semicolons or tabs a spreadsheet writes where the decimal mark is a comma, when those give the header its
    columns, first by the one a first line `sep=;` names (Excel's hint, which a script writing for Excel puts first: it
    was read as the header, refused as naming no column file, clip_id, speaker, emotion, which the next line names);
    Excel reads that line and does not show it, so the rows are numbered as it shows them."""
    hint = _SEP_HINT.match(text)
    if hint:
        text = text[hint.end():]
    seps = tuple(dict.fromkeys((*([hint["sep"]] if hint else []), ",", ";", "\t")))
    for sep in seps:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
        header = [_column(name) for name in next(reader, [])]
        if all(c in header for c in _TRUTH_COLUMNS):
            break
    else:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=seps[0])
        header = [_column(name) for name in next(reader, [])]
    # a blank line is no row, nor is one of empty cells (`,,,`: a spreadsheet writes one for a row it once used), but
    # each counts in the numbers of the rows after it
    return header, [(line, dict(zip(header, cells)), cells[len(header):]) for line, cells in enumerate(reader, start=2)
                    if any(_bare(cell) for cell in cells)]


# a cell that holds no label but says none is known, as a program writes a missing value (pandas' `nan`, R's `NA`,
# Excel's `#N/A`, Python's `None`, SQL's `null`) or a person does (`n/a`, `?`, `-`); MSP-Podcast's speaker `Unknown`.
# Read without case and spaces. Nothing that could be a real id or class: speaker `0` or `x`, emotion `other` (`oth`,
# `o`: a label annotators agreed on, a class in many setups)
_MISSING = {"unknown", "unk", "n/a", "na", "#n/a", "none", "null", "nan", "undefined"}
# given names (pinyin's Na 娜 and Nan 楠, English Nan) written as a name is, capitalised, as no program writes a
# missing value: a speaker of that name keeps its clips (R's `NA`, pandas' `nan` and `NaN` are placeholders)
_NAMES = {"Na", "Nan"}
_NO_AGREEMENT = re.compile(r"x+")  # IEMOCAP's emotion `xxx`, MSP-Podcast's `X`: annotators did not agree
_PLACEHOLDER_FIX = {
    "speaker": "a speaker not identified is no one speaker, whom no split by speaker can hold; give each known speaker "
               "an id of their own and leave the clips of unknown speakers out (a real speaker's id written so, "
               "initials NA: write it another way in every row, spk_NA)",
    "emotion": "no agreed emotion (IEMOCAP's xxx, MSP-Podcast's X: annotators did not agree, or none was given) is no "
               "class; give the clip its emotion, or leave its row out (a class of the corpus's own named so: name it "
               "another way in every row)",
}
_PLACEHOLDER = re.compile(rf"{re.escape(GROUND_TRUTH)} row \d+: placeholder (?P<speaker>speaker '[^']*')?(?: and )?"
                          r"(?P<emotion>emotion '[^']*')?")


def _placeholder(column: str, value: str) -> bool:
    """Whether a ground truth's speaker or emotion cell holds a placeholder, not a label: taken as given, `Unknown` was
    one speaker of thousands of clips (the identity head learnt it, the leakage probe counted it, speaker_disjoint put
    it in one fold) and `xxx` an emotion class, trained and scored as one."""
    said = " ".join(value.casefold().split())
    if column == "speaker" and value in _NAMES:
        return False
    return (said in _MISSING or re.fullmatch(r"[?-]+", said) is not None
            or (column == "emotion" and _NO_AGREEMENT.fullmatch(said) is not None))


def _placeholder_reason(name: str, line: int, posing: dict[str, str]) -> str:
    """A reject's reason for a row whose `posing` cells (column -> the cell as written) hold placeholders."""
    shown = " and ".join(f"{c} {v!r}" for c, v in posing.items())
    return f"{name} row {line}: placeholder {shown}: " + "; and ".join(_PLACEHOLDER_FIX[c] for c in posing)


def placeholders_found(rejects: list[Reject]) -> tuple[list[Reject], int, int]:
    """The rejects of rows holding placeholders (`_placeholder_reason`), by file, and how many name a speaker's and an
    emotion's."""
    matched = [(r, m) for r in rejects if (m := _PLACEHOLDER.match(r.reason))]
    return (sorted((r for r, _ in matched), key=lambda r: r.source_path),
            sum(m["speaker"] is not None for _, m in matched), sum(m["emotion"] is not None for _, m in matched))


def scan(src: Path, files: list[Path], audio_only: bool) -> Scan:
    truth = src / GROUND_TRUTH
    if not truth.is_file():
        media = [p for p in files if p.suffix.lower() in MEDIA]
        if media:  # a corpus of the user's own (a .wav folder): `avdis synth` refuses to write among its files
            raise CorpusError(f"{truth}: missing; to use the {len(media)} media files here (first: {media[0]}) as a "
                              f"corpus, add a {GROUND_TRUTH} listing them, one row per clip, with columns "
                              f"{', '.join(_TRUTH_COLUMNS)}{named_as(src, files, 'synthetic')}")
        raise CorpusError(f"{truth}: missing; generate the corpus with `avdis synth --out {src}`")
    records, rejects = [], []
    rows_of: dict[str, int] = {}  # clip_id -> its row
    files_of: dict[str, int] = {}  # file (its real path) -> its row
    listed: set[str] = set()  # real paths
    cased: dict[str, tuple[int, str]] = {}  # a file a row names but for case (its real path) -> (that row, its name)
    told: list[tuple[int, str, str, int]] = []  # such a row's reject: (its index, the file's name, real path, the row)
    folders: dict[Path, dict[str, list[str]]] = {}  # the folders `_cased` has read
    try:
        with open(truth, newline="", encoding="utf-8-sig") as fh:  # -sig: a spreadsheet's "CSV UTF-8" has a BOM
            header, rows = _table(fh.read())
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{truth}: not UTF-8 text (byte {exc.start}); save it as \"CSV UTF-8\" (a spreadsheet's "
                          "plain \"CSV\" and \"Unicode Text\" are other encodings)") from None
    missing = [c for c in _TRUTH_COLUMNS if c not in header]
    if missing:
        raise CorpusError(f"{truth}: no column {', '.join(missing)}; its header must name {', '.join(_TRUTH_COLUMNS)}")
    _check_no_times(truth, header, rows)
    spans: list[tuple[int, str, str]] = []  # (row, column, text) of the cells that run across lines
    for line, cells, past in rows:
        spans += [(line, c, text) for c, text in cells.items() if "\n" in text.strip() or "\r" in text.strip()]
        # without the spaces around them (or characters that show nothing, `_bare`), which a spreadsheet's cell does
        # not show: `spk1 ` would be a second speaker, in another speaker_disjoint fold than `spk1`'s clips, and
        # ` happy` no emotion
        row = {c: _bare(cells.get(c) or "") for c in (*_TRUTH_COLUMNS, "intensity")}
        row["emotion"] = row["emotion"].lower()  # `Happy` and `happy` in one file are one class
        for c in ("clip_id", "speaker", "emotion"):  # so are `Zoë` typed (NFC) and `Zoë` from a name a Mac wrote (NFD)
            row[c] = unicodedata.normalize("NFC", row[c])
        # a file is its real path, whatever the spelling (`sub/../a.mp4`, a linked folder, a `--src` with `..`): one
        # recording under two would be two clips, one in train and one in test (normpath is no identity: `link/..`
        # is not the folder holding `link`); shown and read as the row spells it
        spelt = row["file"]
        path = src / spelt
        if "\\" in spelt and not is_file(path):  # a list written on Windows: folders by backslash
            spelt = spelt.replace("\\", "/")
            path = src / spelt
        if not is_file(path):  # a name typed composed (`é`, NFC) for a file a Mac wrote decomposed (NFD), or back
            path = next((src / unicodedata.normalize(form, spelt) for form in ("NFC", "NFD")
                         if is_file(src / unicodedata.normalize(form, spelt))), path)
        real = os.path.realpath(path)
        listed.add(real)
        empty = [c for c in _TRUTH_COLUMNS if not row[c]]
        # a line break in a name or label is no part of it: a quote (") left open took the lines after it in, which
        # made a label of them (a class of its own) or a file of no such name
        across = [c for c in (*_TRUTH_COLUMNS, "intensity") if "\n" in row[c] or "\r" in row[c]]
        if all(_column(cells.get(c) or "") == c for c in _TRUTH_COLUMNS):
            # two ground truths joined end to end (`cat a.csv b.csv`) hold the second's header as a row, which read
            # as file `file` listed but missing
            rejects.append(Reject(str(truth), f"{truth.name} row {line}: repeats the header (two lists joined end to "
                                              "end?); it lists no clip: delete the row"))
        elif across:
            rejects.append(Reject(str(path).splitlines()[0], f"{truth.name} row {line}: its {', '.join(across)} cell "
                                                             f"runs across lines; {_OPEN_QUOTE}"))
        elif any(_bare(cell) for cell in past):
            # a separator inside a cell, unquoted, splits it in two and moves every cell after it: speaker `Smith, John`
            # was speaker `Smith` and emotion `John`, a class of its own (the corpus's own labels are taken as given,
            # placeholders aside)
            rejects.append(Reject(str(path), f"{truth.name} row {line}: {len(header) + len(past)} cells for the "
                                             f"header's {len(header)} columns; {_UNQUOTED}"))
        elif empty:
            rejects.append(Reject(str(path), f"{truth.name} row {line}: empty {', '.join(empty)}"))
        elif posing := {c: _bare(cells.get(c) or "") for c in ("speaker", "emotion") if _placeholder(c, row[c])}:
            rejects.append(Reject(str(path), _placeholder_reason(truth.name, line, posing)))
        elif row["clip_id"] in rows_of:
            rejects.append(Reject(str(path), f"{truth.name} row {line}: clip_id {row['clip_id']!r} is already "
                                             f"on row {rows_of[row['clip_id']]}"))
        elif real in files_of:
            rejects.append(Reject(str(path), f"{truth.name} row {line}: file already listed on row {files_of[real]}"))
        elif not is_file(path):
            on_disk = _cased(src, spelt, folders)
            if on_disk is not None:
                cased.setdefault(os.path.realpath(src / on_disk), (line, spelt))
                told.append((len(rejects), on_disk, os.path.realpath(src / on_disk), line))
                where = (f" ({on_disk} is there: the names differ in case, which this file system tells apart, unlike "
                         f"a Mac's or Windows'; write it as {on_disk})")
            else:
                where = _found_nearer(src, spelt)
            rejects.append(Reject(str(path), f"listed in {GROUND_TRUTH} but missing{where}"))
        else:
            rows_of[row["clip_id"]], files_of[real] = line, line
            records.append(ClipRecord(
                clip_id=row["clip_id"], corpus="synthetic", speaker=row["speaker"], emotion=row["emotion"],
                source_path=str(path), audio_path=str(path), video_path=None if audio_only else str(path),
                meta={"intensity": row["intensity"]} if row["intensity"] else {},
            ))
    for at, on_disk, real, line in told:  # the file is listed by another row, before or after: "write it as" would
        if real in files_of:  # make it 'already listed'; on a Mac or Windows the two rows are one file
            rejects[at] = Reject(rejects[at].source_path, f"{truth.name} row {line}: names {on_disk}, which row "
                                                          f"{files_of[real]} lists, in another case (on a Mac or "
                                                          "Windows one file listed twice); drop one of the two rows")
    for p in files:
        if p.suffix.lower() in MEDIA and os.path.realpath(p) not in listed:
            row_of = cased.get(os.path.realpath(p))
            where = (f" (row {row_of[0]} names it {row_of[1]}, in another case)" if row_of is not None
                     else _inside(p.relative_to(src).as_posix(), spans))
            rejects.append(Reject(str(p), f"not listed in {GROUND_TRUTH}{where}"))
    records = _one_per_recording(truth, records, rejects, rows_of)
    _check_speaker_case(truth, records, rows_of)
    return records, rejects


def _check_no_times(truth: Path, header: list[str], rows: list[tuple[int, dict[str, str], list[str]]]) -> None:
    """Refuse a ground truth whose rows give times within their files (`start`, `end`, `onset`, `Start Time`, ...):
    the columns were read as metadata nobody reads, so a row of a session's segment trained on the centre of the whole
    session, other sound than the label's, and the session's other rows were 'file already listed'. An empty column
    is no time."""
    named = [name for name in header if name in _TIME_COLUMNS
             and any(_bare(cells.get(name) or "") for _, cells, _ in rows)]
    if named:
        raise CorpusError(f"{truth}: {'columns' if len(named) > 1 else 'column'} {', '.join(named)} "
                          f"{'place' if len(named) > 1 else 'places'} each row's clip at a time within its file, which "
                          "avdis does not read: a row's clip is its whole file (the features take its centre "
                          "data.features.window_s seconds), and one file is one clip; cut each segment into a file of "
                          f"its own and list those, or, where each row's time is its whole file, leave "
                          f"{'them' if len(named) > 1 else 'it'} out")


def _cased(src: Path, spelt: str, folders: dict[Path, dict[str, list[str]]]) -> str | None:
    """The name of the one file under `src` that `spelt` names but for case (and Unicode form); None where there is
    none, or more than one. A list written on a Mac or a Windows share, whose file systems read `clips/A.mp4` as
    `clips/a.mp4`, names files this one tells apart: each such row was 'missing' beside its file 'not listed', and
    nothing said why. `folders`: the folders read so far, their names by `_folded` form."""
    at, found = src, []
    for part in Path(spelt).parts:
        if os.path.lexists(at / part):
            name = part
        else:
            if at not in folders:
                folders[at] = {}
                try:
                    for entry in os.listdir(at):
                        folders[at].setdefault(_folded(entry), []).append(entry)
                except OSError:
                    pass
            names = folders[at].get(_folded(part), [])
            if len(names) != 1:
                return None
            name = names[0]
        at, found = at / name, [*found, name]
    return Path(*found).as_posix() if found and is_file(at) else None


def _folded(name: str) -> str:
    """A name as a Mac's file system compares it: case and Unicode form aside."""
    return unicodedata.normalize("NFC", name).casefold()


def _found_nearer(src: Path, spelt: str) -> str:
    """Where a listed file that is missing is under `src` with its leading folders left out: a list that names files
    from the folder above (`corpus/clips/a.wav` for `clips/a.wav`), every one of whose rows was 'missing' beside a
    file 'not listed', which did not say from where a name is read."""
    parts = Path(spelt).parts
    found = next((Path(*parts[k:]) for k in range(1, len(parts)) if is_file(src / Path(*parts[k:]))), None)
    if found is None:
        return ""
    return f" ({found.as_posix()} is there: a name is read from the folder that holds {GROUND_TRUTH}, {src})"


_OPEN_QUOTE = 'a quote (") that opens a cell and is never closed takes the lines after it into that cell; close it'
_UNQUOTED = ('a cell holding the separator (a name "Smith, John") must be quoted, or it is read as two cells and the '
             'cells after it move one column on; a column of its own needs a name in the header')


def _inside(name: str, spans: list[tuple[int, str, str]]) -> str:
    """Where a file a ground truth does not list is named inside a cell that runs across lines (`spans`): its row was
    taken into that cell, and 'not listed' alone sent the user looking for a row that is there."""
    def spelt(text: str) -> set[str]:  # the cell's text cut where a row's cells and lines part, each as a path
        return {os.path.normpath(t.strip().strip("\"'").replace("\\", "/")) for t in re.split(r"[\n,;\t|]", text)}

    row, column = next(((row, column) for row, column, text in spans if name in spelt(text)), (None, None))
    if row is None:
        return ""
    return f" (its name is inside row {row}'s {column} cell, which runs across lines; {_OPEN_QUOTE})"


def _one_per_recording(truth: Path, records: list[ClipRecord], rejects: list[Reject],
                       rows_of: dict[str, int]) -> list[ClipRecord]:
    """`records` without the later rows whose file holds the same bytes as an earlier row's (a copy made while
    organising the corpus, under another name): one recording as two clips could be split into train and test, and the
    test would score a clip the model trained on. Such a copy, labelled alike, is unused (its clip's spare, a reject of
    its own should the clip not be made), as RAVDESS's copies are; labelled otherwise, a fault naming both rows."""
    first_of = same_bytes([r.source_path for r in records])
    of_file = {r.source_path: r for r in records}
    spares: dict[str, tuple[str, ...]] = {}
    for copy, first in first_of.items():
        rec, orig = of_file[copy], of_file[first]
        row, at = rows_of[rec.clip_id], rows_of[orig.clip_id]
        differ = [f"{c} {getattr(orig, c)!r} there, {getattr(rec, c)!r} here" for c in ("speaker", "emotion")
                  if getattr(orig, c) != getattr(rec, c)]
        if differ:
            rejects.append(Reject(copy, f"{truth.name} row {row}: the same bytes as {first} (row {at}), labelled "
                                        f"otherwise ({'; '.join(differ)}): one recording is one clip; correct the "
                                        "label that is wrong and list the file once"))
        else:
            rejects.append(Reject(copy, f"duplicate of {first} (the same bytes; {truth.name} row {row}, its row "
                                        f"{at}): one recording is one clip", unused=True))
            spares[first] = (*spares.get(first, ()), copy)
    return [replace(r, spare=(*r.spare, *spares[r.source_path])) if r.source_path in spares else r
            for r in records if r.source_path not in first_of]


def _check_speaker_case(truth: Path, records: list[ClipRecord], rows_of: dict[str, int]) -> None:
    """Refuse speakers whose names differ only in case (`Spk1`, `spk1`): one person typed two ways is two speakers,
    whom speaker_disjoint may put one in train and one in test, and the leakage probe then hears a seen voice."""
    spelt: dict[str, dict[str, int]] = {}  # casefolded -> spelling -> its first row
    for r in records:
        spelt.setdefault(r.speaker.casefold(), {}).setdefault(r.speaker, rows_of[r.clip_id])
    clashes = [ways for ways in spelt.values() if len(ways) > 1]
    if clashes:
        shown = "; ".join(" and ".join(f"{name!r} (row {row})" for name, row in ways.items()) for ways in clashes[:3])
        raise CorpusError(f"{truth}: speakers {shown} differ only in case{' (and more)' if len(clashes) > 3 else ''}: "
                          "one speaker written two ways would be two, which data.split can put in train and in test; "
                          "write each speaker one way (different people need names that differ otherwise)")
