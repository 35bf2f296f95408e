"""A store closed inside its own transaction block: the block's error reaches the caller
(the rollback does not replace it with "the store is closed")."""

from __future__ import annotations

from pathlib import Path

import pytest

from asg_audit.store import open_store


class _Boom(Exception):
    pass


def test_the_blocks_own_error_is_raised(tmp_path: Path) -> None:
    with open_store(tmp_path / "s.duckdb") as store:
        with pytest.raises(_Boom), store.transaction():
            store.close()
            raise _Boom
        assert store.closed
