"""A file found by a folder scan or a glob is read only if it is still the file found.

Found in code review: links were judged when the folder or glob was expanded, but each file
was opened much later by name, following links. Whoever can write the drop folder could leave
`drop/a.ndjson` a regular file for the scan, then swap it (or a folder on its way) for a link
to another file while earlier files were ingested: that file was copied into the store. Now
each file found is opened by its real path without following a link at its end and without
blocking, and must be the file (st_dev, st_ino) found; else it fails by name (`changed since
the folder was read (now a link or another file): not read`), exit 2 after the others. The
swap is made between the expansion and the reading: `expand_paths` is wrapped to swap right
after it ran, in the real ingest (and the real command line, with a timeout).
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from _hardening_procs import query

import asg_audit.ingest_files as ingest_module
from asg_audit.errors import InputError
from asg_audit.filelines import Expected, expand_paths, open_binary
from asg_audit.ingest_files import ingest_paths

SECRET = "the-secret-line-of-another-file"
BIG = 1_200_000  # over SMALL_FILE_BYTES: streamed in its own transaction, not in a group


def rec(task_id: str, pad: int = 0) -> str:
    return json.dumps({"task_id": task_id, "status": "pending", "pad": "x" * pad})


def lines_of(task_prefix: str, size: int) -> str:
    """NDJSON of about `size` bytes (at least one record)."""
    n = max(1, size // 1000)
    return "".join(rec(f"{task_prefix}{i}", 950) + "\n" for i in range(n))


def array_of(task_prefix: str, size: int) -> str:
    n = max(1, size // 1000)
    return "[" + ",".join(rec(f"{task_prefix}{i}", 950) for i in range(n)) + "]"


def write(path: Path, text: str) -> None:
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)


def stored_text(db: Path) -> str:
    return repr(query(db, "SELECT * FROM rejects")) + repr(query(db, "SELECT * FROM observations"))


def swap_after_expansion(monkeypatch: pytest.MonkeyPatch, swap: Callable[[], None]) -> None:
    """Make the ingest's expansion swap files right after it ran (before any is read)."""
    real = ingest_module.expand_paths

    def expand_then_swap(*args: object, **kwargs: object) -> list[Path]:
        found = real(*args, **kwargs)  # type: ignore[arg-type]
        swap()
        return found

    monkeypatch.setattr(ingest_module, "expand_paths", expand_then_swap)


def relink(path: Path, target: Path) -> None:
    """Swap `path` for a symbolic link to `target` (as an attacker would: atomically)."""
    tmp = path.with_name(path.name + ".swap")
    os.symlink(target, tmp)
    os.replace(tmp, path)


def failed(summary: object) -> dict[str, str]:
    return {f.path: f.error or "" for f in summary.files if f.status == "failed"}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("name", "make", "size"),
    [
        ("a.ndjson", lines_of, 100),  # small: read whole, in a group
        ("a.ndjson", lines_of, BIG),  # streamed
        ("a.ndjson.gz", lines_of, 100),
        ("a.ndjson.gz", lines_of, BIG),
        ("a.json", array_of, 100),  # DuckDB's reader, in a group
        ("a.json", array_of, BIG),  # DuckDB's reader, in the store
    ],
)
def test_a_file_swapped_for_a_link_after_the_scan_is_refused(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    make: Callable[[str, int], str],
    size: int,
) -> None:
    private = tmp_path / "private"
    private.mkdir()
    secret = private / name
    write(secret, make("secret", size).replace("pending", SECRET))
    drop = tmp_path / "drop"
    drop.mkdir()
    write(drop / name, make("a", size))
    (drop / "b.ndjson").write_text(rec("b1") + "\n")
    swap_after_expansion(monkeypatch, lambda: relink(drop / name, secret))
    db = tmp_path / "s.duckdb"
    summary = ingest_paths(db, [str(drop)])
    assert failed(summary) == {
        str(drop / name): f"{drop / name}: changed since the folder was read (now a link or"
        " another file): not read"
    }
    assert query(db, "SELECT task_id FROM observations") == [("b1",)]
    assert SECRET not in stored_text(db)


@pytest.mark.parametrize("size", [100, BIG])
def test_a_folder_swapped_for_a_link_after_the_scan_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    private = tmp_path / "private"
    private.mkdir()
    write(private / "a.ndjson", lines_of("secret", size).replace("pending", SECRET))
    drop = tmp_path / "drop"
    (drop / "sub").mkdir(parents=True)
    write(drop / "sub" / "a.ndjson", lines_of("a", size))

    def swap() -> None:  # the file's name is unchanged: a folder on its way now leads out
        os.rename(drop / "sub", tmp_path / "sub-old")
        os.symlink(private, drop / "sub")

    swap_after_expansion(monkeypatch, swap)
    db = tmp_path / "s.duckdb"
    summary = ingest_paths(db, [str(drop / "**" / "*.ndjson")])  # a glob too
    assert list(failed(summary)) == [str(drop / "sub" / "a.ndjson")]
    assert "changed since the folder was read" in failed(summary)[str(drop / "sub" / "a.ndjson")]
    assert SECRET not in stored_text(db)


def test_a_link_inside_reads_the_file_it_led_to_when_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    private = tmp_path / "private"
    private.mkdir()
    secret = private / "passwd"
    secret.write_text(rec("secret").replace("pending", SECRET) + "\n")
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "data.txt").write_text(rec("d1") + "\n")
    (drop / "other.txt").write_text(rec("o1") + "\n")
    os.symlink("data.txt", drop / "link.ndjson")
    os.symlink("other.txt", drop / "link2.ndjson")

    def swap() -> None:
        relink(drop / "link.ndjson", secret)  # the link now leads out: not followed again
        relink(drop / "other.txt", secret)  # the file it led to is now a link

    swap_after_expansion(monkeypatch, swap)
    db = tmp_path / "s.duckdb"
    summary = ingest_paths(db, [str(drop)])
    assert list(failed(summary)) == [str(drop / "link2.ndjson")]
    assert "changed since the folder was read" in failed(summary)[str(drop / "link2.ndjson")]
    assert query(db, "SELECT task_id FROM observations") == [("d1",)]
    assert SECRET not in stored_text(db)


def test_the_command_refuses_a_pipe_swapped_in_without_waiting_and_exits_2(
    tmp_path: Path,
) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "a.ndjson").write_text(rec("a1") + "\n")
    (drop / "b.ndjson").write_text(rec("b1") + "\n")
    private = tmp_path / "private"
    private.mkdir()
    (private / "passwd").write_text(rec("secret").replace("pending", SECRET) + "\n")
    script = f"""
import os, sys
import asg_audit.ingest_files as m
from asg_audit.cli import main
real = m.expand_paths
def expand_then_swap(*a, **k):
    found = real(*a, **k)
    os.remove({str(drop / "a.ndjson")!r})
    os.mkfifo({str(drop / "a.ndjson")!r})  # opening it to read would wait for a writer
    os.symlink({str(private / "passwd")!r}, {str(drop / "c.tmp")!r})
    os.replace({str(drop / "c.tmp")!r}, {str(drop / "b.ndjson")!r})
    return found
m.expand_paths = expand_then_swap
sys.exit(main(["ingest", "--quiet", "--db", {str(tmp_path / "s.duckdb")!r}, {str(drop)!r}]))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    for name in ("a.ndjson", "b.ndjson"):
        assert (
            f"{drop / name}: changed since the folder was read (now a link or another file):"
            " not read"
        ) in done.stderr
    assert SECRET not in stored_text(tmp_path / "s.duckdb")


def test_expand_paths_pins_what_it_found_and_open_binary_checks_it(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "a.ndjson.gz").write_bytes(gzip.compress(b"hello\n"))
    named = tmp_path / "named.ndjson"
    named.write_text("x\n")
    pins: dict[Path, Expected] = {}
    files = expand_paths([drop, named], pins=pins)
    assert files == [drop / "a.ndjson.gz", named]
    assert list(pins) == [drop / "a.ndjson.gz"]  # a path named on its own is not pinned
    with open_binary(drop / "a.ndjson.gz", pins[drop / "a.ndjson.gz"]) as fh:
        assert fh.read() == b"hello\n"  # read from the descriptor, decompressed
    (drop / "new.tmp").write_bytes(gzip.compress(b"another\n"))
    os.replace(drop / "new.tmp", drop / "a.ndjson.gz")  # another file, the same name
    with pytest.raises(InputError, match=r"a\.ndjson\.gz: changed since the folder was read"):
        open_binary(drop / "a.ndjson.gz", pins[drop / "a.ndjson.gz"])
