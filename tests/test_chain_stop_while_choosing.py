"""verify-chain stopped while it chooses the txids to ask (tester A4: a Ctrl-C just after
`audit`'s collect step left the verify-chain run `running`; the stretch between recording the
run and its `try` had no `finish_run`). The run is now recorded `interrupted`, whatever the
moment. A real SIGINT, raised in-process as the pending txids are read, and a real store and
simulator chain index."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
from _chain_sim import scenario
from _hardening_procs import query

from asg_audit import chain_verify
from asg_audit.chain import verify_chain


@pytest.mark.parametrize("where", ["_pending_txids", "_progress_bar"])
def test_a_stop_before_the_first_request_ends_the_run_interrupted(
    where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = getattr(chain_verify, where)

    def stopped(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        signal.raise_signal(signal.SIGINT)
        return result

    monkeypatch.setattr(chain_verify, where, stopped)
    with scenario(tmp_path, tasks=20) as sc:
        with pytest.raises(KeyboardInterrupt):
            verify_chain(sc.db, sc.config, progress=where == "_progress_bar")
        runs = query(sc.db, "SELECT status FROM runs WHERE command = 'verify-chain'")
    assert runs == [("interrupted",)]
