"""Fuzzing: the raw-transaction parser and the webhook receiver over HTTP (hypothesis).

The parser's documented failure is `RawTxError`: arbitrary bytes, arbitrary text and mutations of
real mainnet transactions either parse (and then hash to the txid they report) or raise it, never
anything else. The receiver is fuzzed from its shipped OpenAPI description
(`asg_audit/openapi/webhooks.json`: the `TaskSettled` properties, the signature header, the
documented answers): no 5xx (the documented 503 needs a busy store, which this test never
causes), every answer one of the documented ones, and every request accounted for by a
`webhook_deliveries` row, every authenticated body by an observation or a reject.
(schemathesis is not a dependency: hypothesis generates the requests from the same description.)
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
from _hardening_procs import query
from _webhooks_server import SECRET, ThreadServer
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from asg_audit.rawtx import RawTxError, compute_txid, parse_raw_tx, serialise_decoded_tx
from asg_audit.webhooks import WebhookSettings, create_webhook_app, sign_body

MAINNET = [
    bytes.fromhex(t["hex"])
    for t in json.loads((Path(__file__).parent / "data" / "mainnet_txs.json").read_text())[
        "transactions"
    ]
]
OPENAPI = json.loads((resources.files("asg_audit") / "openapi" / "webhooks.json").read_text())


def fuzz(examples: int) -> settings:
    """Settings of a fuzz test: deterministic in CI (derandomised), no per-example deadline."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],
    )


def _parse_or_documented_error(raw: bytes | str) -> None:
    try:
        parsed = parse_raw_tx(raw)
    except RawTxError:
        return
    data = raw if isinstance(raw, bytes) else bytes.fromhex(raw)
    assert parsed.txid == compute_txid(data)
    assert all(0 <= o.value_sats <= 21_000_000 * 100_000_000 for o in parsed.outputs)


# -- raw transactions -----------------------------------------------------------------------------


@fuzz(400)
@given(st.binary(max_size=600))
@example(b"\x01\x00\x00\x00\xff" + b"\xff" * 8)  # 2**64-1 inputs announced, none there
@example(b"\x01\x00\x00\x00\x01" + b"\x00" * 36 + b"\xfe\xff\xff\xff\x7f")  # 2 GB script
def test_hardening_rawtx_arbitrary_bytes_parse_or_raise_rawtxerror(raw: bytes) -> None:
    _parse_or_documented_error(raw)


@fuzz(200)
@given(st.text(max_size=300) | st.text(alphabet="0123456789abcdefABCDEF \n", max_size=300))
def test_hardening_rawtx_arbitrary_text_parse_or_raise_rawtxerror(text: str) -> None:
    _parse_or_documented_error(text)


@st.composite
def mutated_txs(draw: st.DrawFn) -> bytes:
    """A real mainnet transaction with a few structured mutations (varints, cuts, splices)."""
    raw = bytearray(draw(st.sampled_from(MAINNET)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(raw)))
        action = draw(st.sampled_from(["flip", "delete", "insert", "varint", "cut", "dup"]))
        if action == "flip" and at < len(raw):
            raw[at] ^= 1 << draw(st.integers(0, 7))
        elif action == "delete":
            del raw[at : at + draw(st.integers(1, 40))]
        elif action == "insert":
            raw[at:at] = draw(st.binary(min_size=1, max_size=40))
        elif action == "varint":  # a length prefix claiming much more (or less) than follows
            raw[at:at] = draw(st.sampled_from([b"\xfd", b"\xfe", b"\xff"])) + draw(
                st.binary(min_size=2, max_size=8)
            )
        elif action == "cut":
            del raw[at:]
        elif action == "dup":
            raw[at:at] = raw[max(0, at - 64) : at]
    return bytes(raw)


@fuzz(400)
@given(mutated_txs())
def test_hardening_rawtx_mutated_mainnet_tx_parse_or_raise_rawtxerror(raw: bytes) -> None:
    _parse_or_documented_error(raw)
    _parse_or_documented_error(raw.hex())


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
    max_leaves=6,
)


@st.composite
def mutated_decoded(draw: st.DrawFn) -> Any:
    """A WoC-style decoded answer of a real transaction with fields replaced or dropped."""
    parsed = parse_raw_tx(draw(st.sampled_from(MAINNET)))
    decoded: dict[str, Any] = {
        "txid": parsed.txid,
        "version": parsed.version,
        "locktime": parsed.locktime,
        "vin": [
            {
                "txid": i.prev_txid,
                "vout": i.prev_vout,
                "sequence": i.sequence,
                "scriptSig": {"hex": i.script_sig.hex()},
            }
            for i in parsed.inputs
        ],
        "vout": [
            {"value": o.value_sats / 1e8, "n": o.n, "scriptPubKey": {"hex": o.script.hex()}}
            for o in parsed.outputs
        ],
    }
    for _ in range(draw(st.integers(1, 3))):
        target = draw(st.sampled_from(["top", "vin", "vout"]))
        inner = decoded.get(target)
        node: Any = (
            decoded
            if target == "top"
            else (inner[0] if isinstance(inner, list) and inner else None)
        )
        if not isinstance(node, dict) or not node:
            continue
        key = draw(st.sampled_from(sorted(node)))
        if draw(st.booleans()):
            node.pop(key)
        else:
            node[key] = draw(json_values)
    return decoded


@fuzz(300)
@given(
    mutated_decoded()
    | st.dictionaries(
        st.sampled_from(["hex", "vin", "vout", "version", "locktime", "txid"]), json_values
    )
)
def test_hardening_rawtx_mutated_decoded_answer_serialises_or_raises(decoded: Any) -> None:
    try:
        raw = serialise_decoded_tx(decoded)
    except RawTxError:
        return
    assert raw is None or isinstance(raw, bytes)


# -- the webhook receiver over HTTP ---------------------------------------------------------------

TASK_SETTLED = OPENAPI["components"]["schemas"]["TaskSettled"]
DOCUMENTED = {int(code) for code in OPENAPI["paths"]["/webhooks/asg"]["post"]["responses"]}
HOSTILE_TEXT = st.sampled_from(
    [
        "<script>alert(1)</script>",
        "'; DROP TABLE results; --",
        "\u202egnp.exe",
        "\x00\x1b[31m",
        "a" * 70_000,
        "tsk_ok",
        "../../etc/passwd",
        "%00",
        "\ud7ff",
    ]
)


def _field_value(name: str, schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A value for one documented property: well-formed, or of any type, or hostile text."""
    now = datetime.now(UTC)
    good: dict[str, st.SearchStrategy[Any]] = {
        "event": st.just("task.settled"),
        "task_id": st.from_regex(schema.get("pattern", ".*"), fullmatch=True),
        "consensus_label": st.text(max_size=30),
        "confidence": st.floats(0, 1),
        "bsv_txid": st.none() | st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
        "settled_at": st.just((now - timedelta(seconds=40)).strftime("%Y-%m-%dT%H:%M:%SZ")),
        "timestamp": st.sampled_from(
            [
                now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                int(now.timestamp()),
                (now - timedelta(days=1)).isoformat(),
                "yesterday",
            ]
        ),
    }
    return good.get(name, st.text()) | json_values | HOSTILE_TEXT


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    """A request to POST /webhooks/asg: a body from the TaskSettled description, and headers."""
    props = TASK_SETTLED["properties"]
    if draw(st.integers(0, 9)) == 0:
        body = draw(st.binary(max_size=300))  # the octet-stream variant: any bytes
    else:
        record = {
            name: draw(_field_value(name, props[name]))
            for name in props
            if name in TASK_SETTLED["required"] or draw(st.booleans())
        }
        record.update(draw(st.dictionaries(st.text(max_size=8), json_values, max_size=2)))
        body = json.dumps(record).encode()
    signature = draw(st.sampled_from(["good", "good", "good", "forged", "malformed", "none"]))
    headers = {
        "Content-Type": draw(
            st.sampled_from(["application/json", "application/octet-stream", "text/plain"])
        )
    }
    if signature == "good":
        headers["X-ASG-Signature"] = sign_body(body, SECRET)
    elif signature == "forged":
        headers["X-ASG-Signature"] = sign_body(body, "whsec_not_ours")
    elif signature == "malformed":
        headers["X-ASG-Signature"] = draw(
            st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80)
        )
    return body, headers


def test_hardening_webhooks_fuzzed_deliveries_answer_as_documented_and_are_all_counted(
    tmp_path: Path,
) -> None:
    db = tmp_path / "audit.duckdb"
    answers: dict[int, int] = {}
    app = create_webhook_app(db, [SECRET], settings=WebhookSettings(normalise_interval_ms=50))
    with ThreadServer(app) as server, httpx.Client(timeout=30) as client:

        @fuzz(250)
        @given(deliveries())
        def deliver(request: tuple[bytes, dict[str, str]]) -> None:
            body, headers = request
            answer = client.post(server.hook_url, content=body, headers=headers)
            assert answer.status_code in DOCUMENTED and answer.status_code != 503, answer.text
            assert answer.json()["outcome"] in TASK_OUTCOMES
            answers[answer.status_code] = answers.get(answer.status_code, 0) + 1

        deliver()
        time.sleep(0.2)  # let the last normaliser pass run before the drain
    sent = sum(answers.values())
    assert query(db, "SELECT count(*) FROM webhook_deliveries") == [(sent,)]
    by_status = dict(query(db, "SELECT http_status, count(*) FROM webhook_deliveries GROUP BY 1"))
    assert by_status == answers
    # Every authenticated, fresh, new body is an observation or a reject; nothing else is.
    kept = query(
        db, "SELECT count(*) FROM webhook_deliveries WHERE outcome IN ('stored', 'rejected')"
    )
    accounted = query(
        db,
        "SELECT (SELECT count(*) FROM observations WHERE source = 'webhook')"
        " + (SELECT count(*) FROM rejects WHERE source = 'webhook')",
    )
    assert kept == accounted
    assert answers.get(200, 0) > 0 and answers.get(401, 0) > 0  # both paths were exercised


TASK_OUTCOMES = set(
    OPENAPI["components"]["schemas"]["DeliveryAnswer"]["properties"]["outcome"]["enum"]
)
