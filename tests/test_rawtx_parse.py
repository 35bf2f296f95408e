"""The raw transaction parser on real mainnet transactions and on hand-made edge cases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from asg_audit.chain import IndexIntegrityError, check_index_answer
from asg_audit.rawtx import (
    OutputKind,
    RawTxError,
    classify_script,
    compute_txid,
    parse_raw_tx,
    serialise_decoded_tx,
)

DATA = json.loads((Path(__file__).parent / "data" / "mainnet_txs.json").read_text())
TXS = {t["name"]: t for t in DATA["transactions"]}
P2PKH = bytes.fromhex("76a914" + "11" * 20 + "88ac")


def _tx(outputs: list[tuple[int, bytes]], *, n_in_prefix: bytes = b"\x01") -> bytes:
    body = (1).to_bytes(4, "little") + n_in_prefix
    body += b"\x22" * 32 + (0).to_bytes(4, "little") + b"\x01\x51" + b"\xff" * 4
    body += bytes([len(outputs)])
    for value, script in outputs:
        body += value.to_bytes(8, "little") + bytes([len(script)]) + script
    return body + b"\x00" * 4


@pytest.mark.parametrize("name", sorted(TXS))
def test_rawtx_mainnet_txid_recomputed(name: str) -> None:
    tx = TXS[name]
    assert parse_raw_tx(tx["hex"]).txid == tx["txid"]


@pytest.mark.parametrize("name", sorted(TXS))
def test_rawtx_mainnet_output_values(name: str) -> None:
    tx = TXS[name]
    parsed = parse_raw_tx(tx["hex"])
    assert [o.value_sats for o in parsed.outputs] == tx["output_sats"]
    assert parsed.size == tx["size"] == len(bytes.fromhex(tx["hex"]))


def test_rawtx_genesis_is_coinbase_paying_50_bsv() -> None:
    parsed = parse_raw_tx(TXS["genesis_coinbase"]["hex"])
    assert parsed.is_coinbase
    assert parsed.outputs[0].value_sats == 50 * 100_000_000
    assert parsed.outputs[0].kind is OutputKind.OTHER  # pay-to-pubkey, not P2PKH


def test_rawtx_child_spends_parent_txid() -> None:
    # An independent check of the parent's txid: the child's bytes name it as its outpoint.
    child = parse_raw_tx(TXS["bitcoinjs_tx"]["hex"])
    assert child.inputs[0].prev_txid == TXS["bitcoinjs_prevTx"]["txid"]
    assert child.inputs[0].prev_vout == 0


def test_rawtx_fee_from_parent_outputs() -> None:
    parent = parse_raw_tx(TXS["bitcoinjs_prevTx"]["hex"])
    child = parse_raw_tx(TXS["bitcoinjs_tx"]["hex"])
    fee = parent.outputs[child.inputs[0].prev_vout].value_sats - child.total_out_sats
    assert fee == 100_000 - 90_000


def test_rawtx_many_inputs() -> None:
    parsed = parse_raw_tx(TXS["bitcoinjs_bigTx"]["hex"])
    assert len(parsed.inputs) == 14
    assert all(o.kind is OutputKind.PAYOUT for o in parsed.outputs)


def test_rawtx_values_are_8_byte_little_endian() -> None:
    big = 2_100_000_000_000_000  # 21M BSV: needs all 8 bytes' range beyond 32 bits
    parsed = parse_raw_tx(_tx([(big - 1, P2PKH), (1, P2PKH)]))
    assert [o.value_sats for o in parsed.outputs] == [big - 1, 1]


def test_rawtx_value_above_supply_refused() -> None:
    with pytest.raises(RawTxError, match="supply"):
        parse_raw_tx(_tx([(2_100_000_000_000_001, P2PKH)]))


def test_rawtx_outputs_summing_above_supply_refused() -> None:
    half = 1_050_000_000_000_001  # each within the supply, together above it (consensus)
    with pytest.raises(RawTxError, match="sum to 2100000000000002 exceeds the 21M BSV supply"):
        parse_raw_tx(_tx([(half, P2PKH), (half, P2PKH)]))


def test_rawtx_no_outputs_refused_and_the_index_answer_is_refused() -> None:
    raw = _tx([])
    with pytest.raises(RawTxError, match="no outputs"):
        parse_raw_tx(raw)
    txid = compute_txid(raw)
    with pytest.raises(IndexIntegrityError, match=r"not a transaction \(no outputs"):
        check_index_answer(txid, raw)


@pytest.mark.parametrize(
    ("script", "kind"),
    [
        (P2PKH, OutputKind.PAYOUT),
        (bytes.fromhex("006a0568656c6c6f"), OutputKind.DATA),  # OP_FALSE OP_RETURN
        (bytes.fromhex("6a0568656c6c6f"), OutputKind.DATA),  # bare OP_RETURN
        (bytes.fromhex("a914" + "22" * 20 + "87"), OutputKind.OTHER),  # P2SH
        (P2PKH[:-1], OutputKind.OTHER),
    ],
)
def test_rawtx_classify_script(script: bytes, kind: OutputKind) -> None:
    assert classify_script(script) is kind


def test_rawtx_long_varint_script() -> None:
    data = b"\x00\x6a\x4d" + (300).to_bytes(2, "little") + b"x" * 300  # 305-byte script
    raw = (1).to_bytes(4, "little") + b"\x01" + b"\x22" * 32 + b"\x00" * 4 + b"\x01\x51"
    raw += b"\xff" * 4 + b"\x01" + (0).to_bytes(8, "little")
    raw += b"\xfd" + len(data).to_bytes(2, "little") + data + b"\x00" * 4
    parsed = parse_raw_tx(raw)
    assert parsed.outputs[0].script == data
    assert parsed.outputs[0].kind is OutputKind.DATA


def test_rawtx_non_canonical_varint_refused() -> None:
    raw = _tx([(1, P2PKH)], n_in_prefix=b"\xfd\x01\x00")
    with pytest.raises(RawTxError, match="non-canonical"):
        parse_raw_tx(raw)


def test_rawtx_truncated_refused() -> None:
    raw = bytes.fromhex(TXS["bitcoinjs_tx"]["hex"])
    with pytest.raises(RawTxError, match="truncated"):
        parse_raw_tx(raw[:-5])


def test_rawtx_trailing_bytes_refused() -> None:
    raw = bytes.fromhex(TXS["bitcoinjs_tx"]["hex"]) + b"\x00"
    with pytest.raises(RawTxError, match="trailing"):
        parse_raw_tx(raw)


def test_rawtx_not_hex_refused() -> None:
    with pytest.raises(RawTxError):
        parse_raw_tx("zz")


def test_rawtx_compute_txid_is_reversed_double_sha256() -> None:
    import hashlib

    raw = bytes.fromhex(TXS["genesis_coinbase"]["hex"])
    digest = hashlib.sha256(hashlib.sha256(raw).digest()).digest()
    assert compute_txid(raw) == digest[::-1].hex()


def _decoded(hex_: str) -> dict[str, Any]:
    """A WoC-style decoded answer built from the parsed bytes (values in BSV as floats)."""
    p = parse_raw_tx(hex_)
    vin: list[dict[str, Any]] = []
    for i in p.inputs:
        if i.is_coinbase:
            vin.append({"coinbase": i.script_sig.hex(), "sequence": i.sequence})
        else:
            vin.append(
                {
                    "txid": i.prev_txid,
                    "vout": i.prev_vout,
                    "scriptSig": {"asm": "", "hex": i.script_sig.hex()},
                    "sequence": i.sequence,
                }
            )
    vout = [
        {
            "value": o.value_sats / 100_000_000,
            "n": o.n,
            "scriptPubKey": {"hex": o.script.hex(), "type": "pubkeyhash"},
        }
        for o in p.outputs
    ]
    return {"txid": p.txid, "version": p.version, "locktime": p.locktime, "vin": vin, "vout": vout}


@pytest.mark.parametrize("name", sorted(TXS))
def test_rawtx_decoded_answer_reserialises_to_same_bytes(name: str) -> None:
    hex_ = TXS[name]["hex"]
    assert serialise_decoded_tx(_decoded(hex_)) == bytes.fromhex(hex_)


def test_rawtx_decoded_truncated_script_needs_raw_hex() -> None:
    decoded = _decoded(TXS["bitcoinjs_tx"]["hex"])
    decoded["vout"][0]["scriptPubKey"]["isTruncated"] = True
    assert serialise_decoded_tx(decoded) is None


def test_rawtx_decoded_fractional_satoshi_refused() -> None:
    decoded = _decoded(TXS["bitcoinjs_tx"]["hex"])
    decoded["vout"][0]["value"] = 0.000000001
    assert serialise_decoded_tx(decoded) is None
