"""The reports folder: run folders moved into place, `latest`/`LATEST`, what killed runs left.

`<out>/<run-id>/` is written in a hidden staging folder and moved into place once complete.
`<out>/latest` is a relative symlink to the newest run folder (where symlinks fail, a copy of it
holding `COPY_MARKER`), `<out>/LATEST` a one-line file naming it. The reports folder may be any
folder a user names (`--out .`): an entry there that asg-audit did not make is never replaced,
moved or removed. A `latest` or `LATEST` of someone else's, or anything at the run id that is not
an earlier report of that run, refuses the report (ConfigError) before it writes anything.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import Final

from asg_audit.errors import AuditError, ConfigError, IncompleteRunError

__all__ = [
    "COPY_MARKER",
    "LATEST",
    "LATEST_POINTER",
    "STALE_AFTER_S",
    "check_report_folder",
    "check_report_pointers",
    "check_run_folder",
    "run_id_problem",
]

LATEST: Final = "latest"
LATEST_POINTER: Final = "LATEST"
# The file a copy of a run made as `latest` (where symlinks fail) holds, naming the run: how a
# later report tells its own copy (replaced) from a folder of the user's named `latest` (kept).
COPY_MARKER: Final = ".asg-audit-latest-copy"
# The most a `LATEST` of ours can hold: one run id (at most 200 characters) and a newline.
_POINTER_MAX_BYTES: Final = 256
# What `rename` says when the entry in the way is of the other kind (a folder where a link
# goes, or the other way round) or a folder that is not empty: moved aside, then retried.
_IN_THE_WAY: Final = frozenset({errno.EISDIR, errno.ENOTDIR, errno.ENOTEMPTY, errno.EEXIST})
_REPLACE_TRIES: Final = 20


def _temporary(path: Path) -> Path:
    """Return a hidden temporary name beside `path`, unique to this writer.

    Two processes may write the same file at once (`LATEST`, when two jobs report into one
    folder): with one shared temporary name each could rename the other's away.
    """
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def _write(path: Path, text: str) -> Path:
    tmp = _temporary(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)  # a reader never sees half a file
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _same_entry(a: Path, b: Path) -> bool:
    """Return whether two names are one entry (`latest` and `LATEST` where case is ignored)."""
    try:
        return os.path.samestat(a.lstat(), b.lstat())
    except OSError:
        return False


def _is_latest_copy(path: Path) -> bool:
    """Return whether the folder `path` is a copy of a run made as `latest`: report files alone,
    with our marker (or, made before the marker, a summary.json)."""
    try:
        if not _holds_report_files_only(str(path)):
            return False
    except OSError:
        return False
    return (path / COPY_MARKER).is_file() or (path / "summary.json").is_file()


def _latest_problem(root: Path) -> str | None:
    """Return why `<root>/latest` is not ours to replace, or None (absent, or ours)."""
    link = root / LATEST
    try:
        mode = link.lstat().st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot be read ({exc.strerror or type(exc).__name__})"
    if stat.S_ISLNK(mode):
        target = os.readlink(link)
        # ours: relative, one plain name, so a run folder beside it (gone or not)
        return None if run_id_problem(target) is None else f"a link to {target}, not to a run"
    if stat.S_ISDIR(mode):
        return None if _is_latest_copy(link) else "a folder asg-audit did not make"
    if _same_entry(link, root / LATEST_POINTER):
        return None  # a file system ignoring case: `latest` is `LATEST`, checked as such
    return "a file asg-audit did not make"


def _pointer_problem(root: Path) -> str | None:
    """Return why `<root>/LATEST` is not ours to replace, or None (absent, or ours)."""
    pointer = root / LATEST_POINTER
    try:
        info = pointer.lstat()
        if _same_entry(pointer, root / LATEST) and not stat.S_ISREG(info.st_mode):
            return None  # a file system ignoring case: `LATEST` is `latest`, checked as such
        if not stat.S_ISREG(info.st_mode):
            kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a file"
            return f"{kind}, not asg-audit's pointer file"
        if info.st_size > _POINTER_MAX_BYTES:
            return "a file asg-audit did not write (longer than one run id)"
        text = pointer.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot be read ({exc.strerror or type(exc).__name__})"
    line = text[:-1] if text.endswith("\n") else text
    if run_id_problem(line) is not None:
        return "a file asg-audit did not write (not one run id)"
    return None


def _pointers_refused(root: Path, *, written: bool) -> ConfigError | None:
    """Return the error refusing a report for a `latest`/`LATEST` not ours, or None."""
    for name, find in ((LATEST, _latest_problem), (LATEST_POINTER, _pointer_problem)):
        problem = find(root)
        if problem is not None:
            outcome = (
                "the run folder is complete"
                if written
                else "nothing written (move it away, or report into another folder)"
            )
            return ConfigError(
                f"{root / name}: cannot point latest at the report: {problem}; kept as it is,"
                f" {outcome}"
            )
    return None


def check_report_pointers(out_dir: str | Path) -> None:
    """Raise ConfigError when `latest` or `LATEST` in `out_dir` is not asg-audit's to replace.

    Ours: `latest` a symlink to one plain name (a run folder beside it) or a copy of a run we
    made (report files alone, with `COPY_MARKER` or a summary.json), `LATEST` a file holding
    one run id. Anything else of that name is the user's, and is never touched.
    """
    _refuse_file_in_the_way(Path(out_dir))  # said as `report --out FILE` says it
    refused = _pointers_refused(Path(out_dir), written=False)
    if refused is not None:
        raise refused


def _discard(path: Path) -> None:
    """Remove an entry this writer made or moved aside (best effort)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _replace_latest(new: Path, link: Path) -> None:
    """Move `new` (a symlink or a copy) to `link`, replacing the `latest` of ours there.

    `rename` replaces a symlink with a symlink at once, so readers never miss `latest`. A copy
    (a folder) cannot be renamed over, nor a link over a folder: what is there, checked to be
    ours, is moved aside under a temporary name of this writer and removed. Another writer may
    do the same at the same moment; this one retries until its own `new` is in place.
    """
    for _ in range(_REPLACE_TRIES):
        try:
            os.replace(new, link)
            return
        except OSError as exc:
            if exc.errno not in _IN_THE_WAY:
                _discard(new)
                raise
        refused = _pointers_refused(link.parent, written=True)
        if refused is not None:
            _discard(new)
            raise refused
        aside = _temporary(link)
        try:
            os.replace(link, aside)
        except FileNotFoundError:
            continue  # another writer moved it first
        _discard(aside)
    _discard(new)
    raise OSError(errno.EBUSY, "other reports kept replacing it", str(link))


def _point_latest(root: Path, newest: str) -> None:
    """Point `<root>/latest` (a symlink, else a copy) and `<root>/LATEST` at the run `newest`.

    Raises ConfigError, untouched, when either is not ours (`check_report_pointers`).
    """
    refused = _pointers_refused(root, written=True)
    if refused is not None:
        raise refused
    link = root / LATEST
    new = _temporary(link)
    try:
        new.symlink_to(newest, target_is_directory=True)
    except OSError:
        # No symlinks here (a FAT or SMB share): a full copy instead, made beside it first, so
        # that a failed copy leaves the old `latest` whole; the marker says it is ours.
        try:
            shutil.copytree(root / newest, new)
            (new / COPY_MARKER).write_text(newest + "\n", encoding="utf-8")
        except BaseException:
            _discard(new)
            raise
    _replace_latest(new, link)
    _write(root / LATEST_POINTER, newest + "\n")


# Errors of a full disk: retrying later may work (exit 3). Any other error writing the report
# (a path under a file, no permission, a read-only file system) needs the job fixed (exit 2).
_FULL_DISK_ERRNOS: Final = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})


def _refuse_file_in_the_way(root: Path) -> Path | None:
    """Return the nearest of `root` and its parents that exists (None: none does); raise
    ConfigError `<root>: cannot be the report folder: <it> is a file` when it is no folder."""
    existing = next((p for p in (root, *root.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ConfigError(f"{root}: cannot be the report folder: {existing} is a file")
    return existing


def check_report_folder(out_dir: str | Path) -> None:
    """Raise ConfigError when no report can be written under `out_dir`, before any work.

    The folder, or the nearest parent that exists (where it would be made), must be a folder
    this process can write: a file is created there and removed. A full disk is left to the
    report itself (exit 3: room may be made by then).
    """
    root = Path(out_dir)
    for part in (root, *root.parents):
        if part.is_symlink() and not part.exists():  # a share not mounted, a link left over
            raise ConfigError(
                f"{root}: cannot be the report folder: {part} is a link to"
                f" {os.readlink(part)}, which does not exist"
            )
    existing = _refuse_file_in_the_way(root)
    if existing is None:
        return
    try:
        fd, probe = tempfile.mkstemp(prefix=".asg-audit-probe.", suffix=".tmp", dir=existing)
    except OSError as exc:
        if exc.errno in _FULL_DISK_ERRNOS:
            return
        where = "" if existing == root else f" ({existing} is where it would be made)"
        raise ConfigError(
            f"{root}: cannot write the report folder{where}: {exc.strerror or type(exc).__name__}"
        ) from None
    os.close(fd)
    os.unlink(probe)


def _write_error(
    root: Path, exc: OSError, *, kept: bool, staging: Path | None = None, folder: Path | None = None
) -> AuditError:
    """Return the AuditError for an OSError met while writing a report under `root`.

    `kept`: the run folder was complete and in place, only `latest` could not be pointed at it.
    A path in the hidden `staging` folder is named as its place in the run `folder` (the
    staging folder itself as the reports folder): the user knows those, not the staging name.
    """
    where = exc.filename if isinstance(exc.filename, str) else str(root)
    inside = Path(where)
    if staging is not None and folder is not None and staging in inside.parents:
        where = str(folder / inside.relative_to(staging))
    elif inside.parent == root and inside.name.startswith(".") and inside.name.endswith(".tmp"):
        where = str(root)  # a staging folder or a pointer's temporary file
    what = "cannot point latest at the report" if kept else "cannot write the report"
    outcome = (
        "the run folder is complete" if kept else f"no run folder kept, {root / LATEST} unchanged"
    )
    message = f"{where}: {what} ({exc.strerror or type(exc).__name__}); {outcome}"
    if exc.errno in _FULL_DISK_ERRNOS:
        return IncompleteRunError(message)
    return ConfigError(message)


def _staging_folder(root: Path, run_id: str) -> Path:
    """Return a new hidden folder under `root` to write a run into, made as `mkdir` makes one.

    Not `tempfile.mkdtemp`: its 0700 would become the run folder's mode once renamed into
    place, and nobody else could read a report whose files follow the umask (0644).
    """
    for _ in range(100):
        staging = root / f".{run_id}.{secrets.token_hex(4)}.tmp"
        try:
            staging.mkdir()  # 0777 less the umask, like any folder the user makes
        except FileExistsError:
            continue
        return staging
    raise FileExistsError(errno.EEXIST, "no free staging folder name", str(root))


# A hidden temporary entry of the reports folder (a staging folder, a pointer's temporary file)
# untouched for this long was left by a writer that was killed (kill -9, a reboot): a live
# writer changes its entry within seconds.
STALE_AFTER_S: Final = 3600.0


# What a report leaves when killed while it is written: its staging folder
# (`.<run>.<8 hex>.tmp`, see `_staging_folder`, holding only report files) and a pointer's
# temporary (`.LATEST.<pid>-<8 hex>.tmp`, see `_temporary`). Nothing else is ever swept: the
# reports folder may be any folder a user names (`--out .`), with hidden files of their own.
_STALE_STAGING: Final = re.compile(r"\.(?P<run>.+)\.[0-9a-f]{8}\.tmp")
_STALE_POINTER: Final = re.compile(r"\.(?:LATEST|latest)\.[0-9]+-[0-9a-f]{8}\.tmp")
_REPORT_FILE: Final = re.compile(
    r"\.?(?:index\.html|report\.md|summary\.json|[^/]+\.png)(?:\.[0-9]+-[0-9a-f]{8}\.tmp)?"
    + "|"
    + re.escape(COPY_MARKER)
)


def _holds_report_files_only(path: str) -> bool:
    with os.scandir(path) as inside:
        return all(
            _REPORT_FILE.fullmatch(item.name) is not None and item.is_file(follow_symlinks=False)
            for item in inside
        )


def _is_report_staging(entry: os.DirEntry[str]) -> bool:
    match = _STALE_STAGING.fullmatch(entry.name)
    if match is None or run_id_problem(match["run"]) is not None:
        return False
    return entry.is_dir(follow_symlinks=False) and _holds_report_files_only(entry.path)


def _sweep_stale(root: Path) -> None:
    """Remove what killed reports left in `root`, once untouched for `STALE_AFTER_S`.

    A report killed while it was written leaves its staging folder (`.<run>.<hex>.tmp`, up to
    the size of a report) behind; each later report sweeps those, and the pointers' own
    temporaries, by their exact names (a staging folder only while it holds report files
    alone). Best effort: an entry that cannot be removed stays, and the report that was
    written is not affected.
    """
    cutoff = time.time() - STALE_AFTER_S
    try:
        entries = list(os.scandir(root))
    except OSError:
        return
    for entry in entries:
        try:
            if entry.stat(follow_symlinks=False).st_mtime > cutoff:
                continue
            if _STALE_POINTER.fullmatch(entry.name):
                if not entry.is_dir(follow_symlinks=False):
                    os.unlink(entry.path)  # LATEST's text, or the `latest` symlink
                elif _holds_report_files_only(entry.path):
                    shutil.rmtree(entry.path)  # `latest` as a copy, where symlinks fail
            elif _is_report_staging(entry):
                shutil.rmtree(entry.path)
        except OSError:
            continue


# A run id is one plain file name: it becomes `<out>/<run_id>`, and a name such as `.`, `..`,
# `a/b`, `latest` or a hidden `.x` would be (or collide with) the reports folder itself, the
# `latest`/`LATEST` pointers, `--compare previous` or the hidden staging and aside folders.
_RUN_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")
_RESERVED_RUN_IDS: Final = frozenset({LATEST.lower(), LATEST_POINTER.lower(), "previous"})


def run_id_problem(run_id: str) -> str | None:
    """Return why `run_id` cannot name a report folder, or None when it can."""
    if not _RUN_ID.fullmatch(run_id):
        return (
            "expected one plain name (letters, digits, '_', '-' and '.', starting with a letter"
            " or digit, at most 200 characters; no '/')"
        )
    lowered = run_id.lower()
    if lowered in _RESERVED_RUN_IDS or lowered.startswith(f"{LATEST}.") or lowered.endswith(".tmp"):
        return "a name the reports folder uses itself (latest, LATEST, previous, *.tmp)"
    return None


def _own_report(folder: Path) -> bool:
    """Return whether `folder` is a report asg-audit wrote of the run it is named after:
    report files alone, and a summary.json naming that run."""
    try:
        if not folder.is_dir() or folder.is_symlink() or not _holds_report_files_only(str(folder)):
            return False
        if (folder / COPY_MARKER).exists():
            return False
        doc = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("run_id") == folder.name


def _run_folder_problem(folder: Path) -> str | None:
    """Return why a new report may not take the place of what is at `folder`, or None."""
    if not os.path.lexists(folder) or _own_report(folder):
        return None
    if folder.is_symlink():
        return "a link"
    return "a folder that is not an earlier report of this run" if folder.is_dir() else "a file"


def check_run_folder(folder: str | Path, *, written: bool = False) -> None:
    """Raise ConfigError when a report cannot be written at `folder` (`<out>/<run_id>`).

    Nothing there, or an earlier report of the same run id (report files alone, its
    summary.json naming the run), which the new report replaces. Anything else there (a folder
    of the user's, one holding a file the report did not write, a file, a link) is kept.
    """
    path = Path(folder)
    problem = _run_folder_problem(path)
    if problem is not None:
        outcome = "no run folder kept" if written else "nothing written"
        raise ConfigError(
            f"{path}: cannot write the report of run {path.name!r} there: {problem} is in the"
            f" way; kept as it is, {outcome} (choose another run_id, or move it away)"
        )


def _publish(staging: Path, folder: Path) -> None:
    """Move a fully written run folder into place (replacing an earlier report of that run).

    Only ever a run folder directly under the reports folder (where `staging` is): never the
    reports folder itself, a pointer, anything outside it, or anything not ours
    (`check_run_folder`).
    """
    problem = run_id_problem(folder.name)
    root = Path(os.path.abspath(staging)).parent
    if problem is not None or Path(os.path.abspath(folder)).parent != root:
        raise ConfigError(
            f"run_id {folder.name!r}: {problem or 'not a folder directly under ' + str(root)}"
        )
    check_run_folder(folder, written=True)
    if not os.path.lexists(folder):
        os.replace(staging, folder)
        return
    # aside under a staging name of its own: a run killed here leaves what the sweep removes
    aside = _staging_folder(root, folder.name)
    os.replace(folder, aside)  # onto the empty folder just made
    os.replace(staging, folder)
    shutil.rmtree(aside, ignore_errors=True)
