"""Every secret the process holds is masked in what `collect`, `billing` and `verify-chain`
store and print, not only the one each sends (tester T5).

1. A Gateway answer echoing `ASG_WEBHOOK_SECRET` (either secret of a rotation list) or
   `WOC_API_KEY` (in a consensus label, an error message, a 202 body, a `Location` header; as
   sent, JSON-escaped, percent-encoded) was stored and printed as it came: `collect` and
   `billing` masked only the API key.
2. An API key holding a dash (`sk_live_4f9a-7bc2-...`) echoed in a redirect's `Location` was
   stored as `***-7bc2-...`: the generic key pattern ran before the exact mask and took the key
   only up to its first dash.
3. `verify-chain` cut an index's error text (and a bad field's value) short before masking it:
   a WoC key straddling the cut was no longer matched, and most of it was stored and printed.

Real commands in subprocesses against real HTTP servers on 127.0.0.1, real stores; the store's
file bytes, every column of every table, stdout and stderr are searched for any part of any
secret.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import quote

from _billing_gateway import BillingGateway, billing_gateway
from _chain_echo import TX_ERR, TX_HASH, chain_results, echoing_index
from _hardening_procs import asg_audit, clean_env
from _http_server import serve
from _scripted_gateway import settled_body

from asg_audit.redaction import display_url, redact, shown_setting
from asg_audit.store import open_store

# none shaped like an ASG key (`sk_live_...`) but the dashed one: only the exact masking of
# the configured secrets can catch them
API_KEY = "apikey_Pz81mainKEYbody"
HOOK_NEW, HOOK_OLD = "whsec_NEWhookSECRET41", "whsec_OLDhookSECRET42"
WOC_KEY = "woc_MAINnetKEY/77abc"  # a slash: JSON's `\/`, percent-encoding's `%2F`
DASH_KEY = "sk_live_4f9a-7bc2-91de-SECRETTAIL"

# distinctive parts of each: none may be found anywhere
PARTS: tuple[str, ...] = ("mainKEYbody", "NEWhookSECRET", "OLDhookSECRET", "MAINnetKEY")
PARTS += ("77abc", "SECRETTAIL", "7bc2-91de")


def _env(**extra: str) -> dict[str, str]:
    return clean_env(
        drop_prefix="ASG_",
        ASG_WEBHOOK_SECRET=f"{HOOK_NEW},{HOOK_OLD}",
        WOC_API_KEY=WOC_KEY,
        **extra,
    )


def _leaks(text: str) -> list[str]:
    return [part for part in PARTS if part in text]


def _stored_leaks(db: Path) -> list[tuple[str, str, str]]:
    """(table, column, part) of every column of every table holding a part of a secret, and
    ("<file>", name, part) of every store file holding one in its bytes."""
    found = []
    with open_store(db) as store:
        con = store.con
        columns = con.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'main' ORDER BY ALL"
        ).fetchall()
        for table, column in columns:
            for part in PARTS:
                (rows,) = con.execute(
                    f'SELECT count(*) FROM "{table}" WHERE CAST("{column}" AS VARCHAR)'
                    " LIKE '%' || ? || '%'",
                    [part],
                ).fetchone() or (0,)
                if rows:
                    found.append((table, column, part))
    for path in db.parent.iterdir():
        if path.name.startswith(db.name) and path.is_file():
            data = path.read_bytes()
            found += [("<file>", path.name, p) for p in PARTS if p.encode() in data]
    return found


# -- 1 and 2: collect --------------------------------------------------------------------------

IDS = ["tsk_label", "tsk_e400", "tsk_e202", "tsk_e404", "tsk_moved", "tsk_moved_key"]


def _first_answer(task_id: str, auth: str) -> tuple[int, bytes, dict[str, str]]:
    """The echoing first answer about a task (the next ones settle it)."""
    if task_id == "tsk_label":  # settled, its label the webhook secret, JSON-escaped `\/`
        body = json.loads(settled_body(task_id))
        body["consensus_label"] = f"label {HOOK_NEW} / {WOC_KEY}"
        return 200, json.dumps(body).replace("/", "\\/").encode(), {}
    if task_id == "tsk_e400":
        return 400, json.dumps({"error": f"bad hook secret {HOOK_OLD}"}).encode(), {}
    if task_id == "tsk_e202":
        body = {"task_id": task_id, "status": "in_progress", "note": quote(WOC_KEY, safe="")}
        return 202, json.dumps(body).encode(), {}
    if task_id == "tsk_moved":
        where = f"http://elsewhere.example/x/{quote(HOOK_NEW)}/{quote(WOC_KEY, safe='')}"
        return 302, b"<html>moved</html>", {"Location": where}
    if task_id == "tsk_moved_key":  # the API key as sent, after `Bearer `
        return (
            302,
            b"<html>moved</html>",
            {"Location": f"http://elsewhere.example/k/{auth.split()[-1]}/end"},
        )
    return 404, json.dumps({"error": {"code": "nf", "message": f"none {HOOK_NEW}"}}).encode(), {}


@contextmanager
def _echoing_gateway() -> Iterator[str]:
    counts: dict[str, int] = {}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            task_id = self.path.split("/")[3]
            auth = self.headers.get("Authorization", "")
            with lock:
                counts[task_id] = n = counts.get(task_id, 0) + 1
            if n == 1 or task_id not in IDS:
                code, body, headers = _first_answer(task_id, auth)
            else:
                code, body, headers = 200, settled_body(task_id), {}
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with serve(Handler) as base:
        yield base


def _collect(tmp_path: Path, api_key: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    db = tmp_path / "a.duckdb"
    (tmp_path / "ids.txt").write_text("\n".join(IDS) + "\n")
    (tmp_path / "c.toml").write_text("[collector]\ndeadline_s = 60\nmax_rps = 50\n")
    with _echoing_gateway() as url:
        proc = subprocess.run(
            asg_audit(
                *("collect", "--db", str(db), "--config", str(tmp_path / "c.toml")),
                *("--task-ids", str(tmp_path / "ids.txt")),
            ),
            env=_env(ASG_API_KEY=api_key, ASG_BASE_URL=url),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc, db


def test_collect_masks_the_webhook_secrets_and_the_woc_key_in_what_it_stores(
    tmp_path: Path,
) -> None:
    proc, db = _collect(tmp_path, API_KEY)
    assert _leaks(proc.stdout) == [] and _leaks(proc.stderr) == []
    assert _stored_leaks(db) == []
    with open_store(db) as store:
        con = store.con
        labels = con.execute(
            "SELECT consensus_label FROM observations WHERE task_id = 'tsk_label'"
            " AND consensus_label IS NOT NULL"
        ).fetchall()
        assert ("label *** / ***",) in labels, labels
        (error,) = con.execute(
            "SELECT error_message FROM observations WHERE http_status = 400"
        ).fetchone() or ("",)
        assert error == "bad hook secret ***"
        details = " ".join(str(d) for (d,) in con.execute("SELECT detail FROM rejects").fetchall())
        assert "elsewhere.example/x/***/***" in details, details


def test_collect_masks_a_dashed_api_key_whole_in_a_redirect_location(tmp_path: Path) -> None:
    proc, db = _collect(tmp_path, DASH_KEY)
    assert _leaks(proc.stdout) == [] and _leaks(proc.stderr) == []
    assert _stored_leaks(db) == []
    with open_store(db) as store:
        details = " ".join(
            str(d) for (d,) in store.con.execute("SELECT detail FROM rejects").fetchall()
        )
    assert "elsewhere.example/k/***/end" in details, details


def test_display_url_masks_the_exact_secret_before_the_key_pattern() -> None:
    url = f"http://gw.example/v1/{DASH_KEY}/x?q=1"
    assert display_url(url, [DASH_KEY]) == "http://gw.example/v1/***/x"
    # not configured (the report's configuration table without the env var): the key pattern
    # takes the whole token, up to the next separator
    assert display_url(url) == "http://gw.example/v1/***/x"
    assert redact(f"key={DASH_KEY}, next") == "key=***, next"
    # `.` is no separator: a host holding a key is masked to the next `/`
    assert shown_setting("base_url", f"https://{DASH_KEY}.example/p", []) == "https://***/p"
    assert shown_setting("drop_folders", f"/srv/{DASH_KEY}-dir/in", []) == "/srv/***/in"


# -- 1: billing --------------------------------------------------------------------------------


def _billing(
    tmp_path: Path, state: BillingGateway, month: str, api_key: str
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run `asg-audit billing` for `month` against a gateway answering as `state`, with no
    retries; return the process (its stderr checked for a traceback) and the store."""
    db = tmp_path / "b.duckdb"
    with open_store(db):
        pass
    (tmp_path / "b.toml").write_text("[billing]\nmax_retries = 0\n")
    with billing_gateway(state) as url:
        proc = subprocess.run(
            asg_audit(
                *("billing", "--db", str(db), "--month", month),
                *("--config", str(tmp_path / "b.toml")),
            ),
            env=_env(ASG_API_KEY=api_key, ASG_BASE_URL=url),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc, db


def test_billing_masks_the_webhook_secret_and_the_woc_key_in_usage_and_invoices(
    tmp_path: Path,
) -> None:
    month = "2026-09"
    usage = {
        "customer_id": "cus_t5", "month": month, "tier": f"tier {HOOK_OLD}", "tasks_settled": 2,
        "total_cost_sats": 1000, "total_cost_usd_estimate": 0.5, "worker_payouts_sats": 1000,
        "platform_fee_sats": 0,
        "daily_breakdown": [{"date": f"{month}-03", "tasks": 2, "cost_sats": 1000}],
    }  # fmt: skip
    invoice = {
        "invoice_id": "inv_1", "month": month, "status": f"open {WOC_KEY}", "total_sats": 1000,
        "tasks": 2,
    }  # fmt: skip
    state = BillingGateway(
        usage=lambda asked: (200, usage, {}), invoices=(200, {"invoices": [invoice]}, {})
    )
    proc, db = _billing(tmp_path, state, month, API_KEY)
    assert _leaks(proc.stdout) == [] and _leaks(proc.stderr) == []
    assert _stored_leaks(db) == []
    with open_store(db) as store:
        assert store.con.execute("SELECT tier FROM billing_usage").fetchall() == [("tier ***",)]


def test_billing_masks_a_dashed_api_key_whole_in_a_redirect_location(tmp_path: Path) -> None:
    location = f"http://elsewhere.example/k/{DASH_KEY}/end"
    state = BillingGateway(
        usage=lambda asked: (200, {}, {}), invoices=(302, {}, {"Location": location})
    )
    proc, db = _billing(tmp_path, state, "2026-09", DASH_KEY)
    assert "elsewhere.example/k/***/end" in proc.stderr, proc.stderr
    assert _leaks(proc.stdout) == [] and _leaks(proc.stderr) == []
    assert _stored_leaks(db) == []


# -- 3: verify-chain ---------------------------------------------------------------------------

# 34 characters, as the tester's
CHAIN_KEY = "woc_CUTstraddle0123456789abcdefXYZ"


def test_verify_chain_masks_a_woc_key_that_straddles_where_a_note_is_cut(tmp_path: Path) -> None:
    db = tmp_path / "c.duckdb"
    results = chain_results(tmp_path)
    env = clean_env(drop_prefix="ASG_")
    env.pop("WOC_API_KEY", None)
    ingest = subprocess.run(
        asg_audit("ingest", "--db", str(db), str(results)),
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert ingest.returncode == 0, ingest.stderr
    # the index quotes the key across the places a note is cut short: the 120th character of
    # an error's repr, the 80th of a bad field's
    with echoing_index(
        error=lambda key: "e" * 105 + key + " over quota", blockhash=lambda key: "h" * 65 + key
    ) as url:
        env.update(WOC_API_KEY=CHAIN_KEY, ASG_CHAIN_URL=url)
        proc = subprocess.run(
            asg_audit("verify-chain", "--db", str(db)),
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    pieces = [CHAIN_KEY[i : i + 6] for i in range(4, len(CHAIN_KEY) - 5, 3)]
    for text in (proc.stdout, proc.stderr):
        assert [p for p in pieces if p in text] == [], text
    with open_store(db) as store:
        notes = dict(store.con.execute("SELECT txid, note FROM chain_txs").fetchall())
    assert "***" in notes[TX_ERR] and "***" in notes[TX_HASH], notes
    for note in notes.values():
        assert [p for p in pieces if p in note] == [], note
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("c.duckdb"))
    assert [p for p in pieces if p.encode() in data] == []


def test_the_key_pattern_keeps_the_words_after_a_key() -> None:
    # review R2: the token ran to white space, taking `!`, `@`, non-ASCII and a final dot
    assert redact("key sk_live_abc\u2014and then words") == "key ***\u2014and then words"
    assert redact("a sk_test_x!important!stuff") == "a ***!important!stuff"
    assert redact("the key is sk_live_abc.") == "the key is ***."
    assert redact("mail sk_test_k@example.com") == "mail ***@example.com"
