"""Finding a source folder's files. Files are found through symlinked folders (each real folder once, under its own name
where the source tree holds it), hidden names and the output folder skipped; a link whose target is missing, and an
iCloud Drive placeholder (hidden) of a file not downloaded, are rejects, not silent gaps."""

from __future__ import annotations

import os
from pathlib import Path

from avdis.data.corpora.records import Reject, no_media


def files_under(src: Path, skip: Path | None = None) -> tuple[list[Path], list[Reject]]:
    """Every file under `src` (sorted) and the rejects of the walk (folders it cannot list, broken links, devices:
    none is left out in silence, as `os.walk` would by itself). Symlinked folders are
    entered once per real folder, under its own name where the tree holds it (a link into the tree is not followed;
    one to elsewhere is, under the link's name), so a link loop ends and a folder linked twice is not counted twice;
    hidden names (but iCloud Drive's placeholders of files not downloaded, rejects: `_ICLOUD`) and the folder `skip`
    (a preprocess output inside the source) are left out."""
    top = os.path.realpath(src)
    seen = {top} | ({os.path.realpath(skip)} if skip else set())
    files: list[Path] = []
    rejects: list[Reject] = []
    def unlisted(exc: OSError) -> None:
        rejects.append(Reject(str(exc.filename), f"cannot list this folder ({exc.strerror or exc}): its files are "
                                                 "not read; give the user running this access to it"))

    for root, dirs, names in os.walk(src, followlinks=True, onerror=unlisted):
        kept = []
        for name in sorted(dirs, key=lambda d: (os.path.islink(os.path.join(root, d)), d)):  # a folder before a link
            path = os.path.join(root, name)
            real = os.path.realpath(path)
            if name.startswith(".") or real in seen or (os.path.islink(path) and _walked(real, top)):
                continue
            seen.add(real)
            if _readable(name):
                kept.append(name)
            else:
                rejects.append(Reject(_shown(path), f"{_NOT_UTF8}; its files are not read"))
        dirs[:] = kept
        for name in names:
            path = Path(root) / name
            if name.startswith("."):
                if _readable(name) and _icloud_placeholder(name):
                    rejects.append(Reject(str(path), _ICLOUD.format(name[1:-len(".icloud")]), unused=no_media(path)))
                continue
            if not _readable(name):
                rejects.append(Reject(_shown(path), _NOT_UTF8))
                continue
            try:
                regular = path.is_file()
            except OSError as exc:  # a folder that can be listed but not entered (no x permission)
                rejects.append(Reject(str(path), f"cannot read this file's details ({exc.strerror or exc}): give the "
                                                 "user running this search (x) permission on its folder"))
                continue
            if regular:
                files.append(path)
            elif path.is_symlink():
                rejects.append(Reject(str(path), f"symbolic link to {os.readlink(path)!r}, which does not exist"))
            else:
                rejects.append(Reject(str(path), "not a regular file"))
    return sorted(files), rejects


def _walked(real: str, top: str) -> bool:
    """Whether the walk of the real folder `top` reaches the real folder `real` under its own name: a link to it is
    then not followed, as os.walk, being top-down, may meet a link before the folder (CREMA-D's `wav -> raw/AudioWAV`
    read as `wav/` would make every file a reject). A folder in a hidden one is not walked: a link is its only way in."""
    if os.path.commonpath([real, top]) != top:
        return False
    return not any(part.startswith(".") for part in Path(os.path.relpath(real, top)).parts)


# what macOS leaves of a file in iCloud Drive not downloaded to the Mac ("Optimize Mac Storage"): `.a.mp4.icloud`, a
# small plist beside no `a.mp4`; hidden, it was passed over with the other hidden names, and its clip was lost in
# silence (a corpus copied off such a Mac with rsync or scp keeps the placeholders)
_ICLOUD = ("an iCloud Drive placeholder of {}, not the file: macOS had not downloaded it when the corpus was copied; "
           "download it there (Finder: Download Now, or `brctl download`) and copy it again")


def _icloud_placeholder(name: str) -> bool:
    """Whether a hidden name is iCloud Drive's placeholder of a file not downloaded: `.<its name>.icloud`."""
    return name.endswith(".icloud") and len(name) > len("..icloud")


_NOT_UTF8 = "name is not UTF-8 text (as unzip leaves a Windows archive's names); rename it"


def _readable(name: str) -> bool:
    """Whether a file name is UTF-8 text: the manifest, the shards and the reports hold names as UTF-8."""
    try:
        name.encode()
    except UnicodeEncodeError:
        return False
    return True


def is_file(path: Path) -> bool:
    """Whether `path` is a regular file; False where its folder cannot be entered (the walk names that folder)."""
    try:
        return path.is_file()
    except OSError:
        return False


def _shown(path: str | Path) -> str:
    """A path whose name is not UTF-8, written with its undecodable bytes as \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")
