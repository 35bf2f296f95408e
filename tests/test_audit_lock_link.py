"""Every name of one store shares one audit lock: a symbolic link to the file, or a path
through a linked folder, must not let a second audit run beside the first."""

from __future__ import annotations

from pathlib import Path

import pytest

from asg_audit.errors import StoreBusyError
from asg_audit.jobs import audit_lock


def test_a_link_to_the_store_and_a_linked_folder_share_the_audit_lock(tmp_path: Path) -> None:
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    db = real_dir / "audit.duckdb"
    db.write_bytes(b"")
    link = tmp_path / "link.duckdb"
    link.symlink_to(db)
    folder_link = tmp_path / "linked"
    folder_link.symlink_to(real_dir, target_is_directory=True)

    with audit_lock(db) as held:
        assert held == real_dir / "audit.duckdb.audit-lock"
        for other in (link, folder_link / "audit.duckdb"):
            with (
                pytest.raises(StoreBusyError, match="another audit run is in progress"),
                audit_lock(other),
            ):
                pass
    with audit_lock(link) as held:  # released: any name takes it, beside the real file
        assert held == real_dir / "audit.duckdb.audit-lock"
    assert not (tmp_path / "link.duckdb.audit-lock").exists()
