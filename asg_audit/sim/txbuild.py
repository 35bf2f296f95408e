"""Real serialised BSV transactions: build raw bytes, compute txids, decode as WoC does."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Any

from asg_audit.model import SATS_PER_BSV

__all__ = [
    "FEE_RATE_SATS_PER_KB",
    "SimTx",
    "TxOutput",
    "build_tx",
    "decode_tx",
    "double_sha256",
    "p2pkh_address",
    "p2pkh_script",
    "txid_of",
]

FEE_RATE_SATS_PER_KB = 100  # the BSV norm from late 2025 onward (spec/bsv-chain.md)
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def double_sha256(data: bytes) -> bytes:
    """Return sha256(sha256(data))."""
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def txid_of(raw: bytes) -> str:
    """Return the txid of raw transaction bytes: double SHA-256, byte-reversed, hex."""
    return double_sha256(raw)[::-1].hex()


def _varint(n: int) -> bytes:
    if n < 0xFD:
        return bytes([n])
    if n <= 0xFFFF:
        return b"\xfd" + n.to_bytes(2, "little")
    if n <= 0xFFFFFFFF:
        return b"\xfe" + n.to_bytes(4, "little")
    return b"\xff" + n.to_bytes(8, "little")


def _push(data: bytes) -> bytes:
    if len(data) < 0x4C:
        return bytes([len(data)]) + data
    if len(data) <= 0xFF:
        return b"\x4c" + bytes([len(data)]) + data
    return b"\x4d" + len(data).to_bytes(2, "little") + data


def p2pkh_script(pubkey_hash: bytes) -> bytes:
    """Return OP_DUP OP_HASH160 <20 bytes> OP_EQUALVERIFY OP_CHECKSIG."""
    return b"\x76\xa9\x14" + pubkey_hash + b"\x88\xac"


def p2pkh_address(pubkey_hash: bytes) -> str:
    """Return the mainnet base58check address of a public key hash."""
    payload = b"\x00" + pubkey_hash
    data = payload + double_sha256(payload)[:4]
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = _B58[r] + out
    pad = len(data) - len(data.lstrip(b"\x00"))
    return "1" * pad + out


@dataclass(frozen=True)
class TxOutput:
    """One output: an amount in satoshis and a locking script; `kind` is payout/fee/change/data."""

    value_sats: int
    script: bytes
    kind: str


@dataclass
class SimTx:
    """A serialised transaction and the facts the simulator needs about it."""

    txid: str
    raw: bytes
    outputs: list[TxOutput]
    fee_sats: int
    broadcast_at: int  # epoch seconds: when the index first knows it
    mined: bool = True  # False: stays in the mempool forever
    known: bool = True  # False: the index answers 404 (txid_unknown_on_chain)
    omit_blockheight: bool = False  # an "older answer" without blockheight
    meta: dict[str, Any] = field(default_factory=dict)

    def non_data_sats(self) -> int:
        """Return the sum of outputs that are not OP_RETURN data."""
        return sum(o.value_sats for o in self.outputs if o.kind != "data")


def _serialise(
    inputs: list[tuple[bytes, int, bytes, int]], outputs: list[TxOutput], locktime: int
) -> bytes:
    parts = [(1).to_bytes(4, "little"), _varint(len(inputs))]
    for prev_hash, vout, script_sig, sequence in inputs:
        parts += [
            prev_hash,
            vout.to_bytes(4, "little"),
            _varint(len(script_sig)),
            script_sig,
            sequence.to_bytes(4, "little"),
        ]
    parts.append(_varint(len(outputs)))
    for o in outputs:
        parts += [o.value_sats.to_bytes(8, "little"), _varint(len(o.script)), o.script]
    parts.append(locktime.to_bytes(4, "little"))
    return b"".join(parts)


def build_tx(
    rng: random.Random,
    payouts: list[tuple[bytes, int, str]],
    *,
    broadcast_at: int,
    change_pkh: bytes,
    op_return: bytes | None = None,
    change_min_sats: int = 50_000,
    with_change: bool = True,
) -> SimTx:
    """Return a signed-looking transaction paying `payouts` (pubkey hash, sats, kind).

    Inputs carry no amounts in BSV's format, so the fee is implicit: we pick a funding
    amount, size the transaction and leave `change = funding - payouts - fee` (at least
    `change_min_sats`, so a batch's outputs always cover its costs with room to spare).
    """
    inputs = []
    for _ in range(rng.choice((1, 1, 1, 2))):
        sig = bytes(rng.getrandbits(8) for _ in range(rng.choice((71, 72))))
        pub = bytes([rng.choice((2, 3))]) + bytes(rng.getrandbits(8) for _ in range(32))
        inputs.append(
            (
                rng.getrandbits(256).to_bytes(32, "little"),
                rng.randrange(4),
                _push(sig) + _push(pub),
                0xFFFFFFFF,
            )
        )
    outputs = [TxOutput(sats, p2pkh_script(pkh), kind) for pkh, sats, kind in payouts]
    if op_return is not None:
        outputs.append(TxOutput(0, b"\x00\x6a" + _push(op_return), "data"))
    placeholder = TxOutput(0, p2pkh_script(change_pkh), "change")
    size = len(_serialise(inputs, [*outputs, placeholder], 0))
    fee = (size * FEE_RATE_SATS_PER_KB + 999) // 1000
    if with_change:
        change = change_min_sats + rng.randrange(1_000_000)
        outputs.insert(
            rng.randrange(len(outputs) + 1), TxOutput(change, placeholder.script, "change")
        )
    raw = _serialise(inputs, outputs, 0)
    return SimTx(
        txid=txid_of(raw), raw=raw, outputs=outputs, fee_sats=fee, broadcast_at=broadcast_at
    )


def _script_json(script: bytes) -> dict[str, Any]:
    if len(script) == 25 and script[:3] == b"\x76\xa9\x14" and script[23:] == b"\x88\xac":
        pkh = script[3:23]
        return {
            "asm": f"OP_DUP OP_HASH160 {pkh.hex()} OP_EQUALVERIFY OP_CHECKSIG",
            "hex": script.hex(),
            "reqSigs": 1,
            "type": "pubkeyhash",
            "addresses": [p2pkh_address(pkh)],
            "isTruncated": False,
        }
    if script[:2] == b"\x00\x6a":
        data = script[3:] if script[2] < 0x4C else script[4:]
        return {
            "asm": f"0 OP_RETURN {data.hex()}",
            "hex": script.hex(),
            "type": "nulldata",
            "isTruncated": False,
        }
    return {"asm": "", "hex": script.hex(), "type": "nonstandard", "isTruncated": False}


def decode_tx(raw: bytes) -> dict[str, Any]:
    """Return the WoC-style decoded JSON of raw bytes (values in BSV as floats, as WoC does)."""
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        chunk = raw[pos : pos + n]
        pos += n
        return chunk

    def varint() -> int:
        first = take(1)[0]
        if first < 0xFD:
            return first
        width = {0xFD: 2, 0xFE: 4, 0xFF: 8}[first]
        return int.from_bytes(take(width), "little")

    version = int.from_bytes(take(4), "little")
    vin = []
    for _ in range(varint()):
        prev = take(32)[::-1].hex()
        vout = int.from_bytes(take(4), "little")
        script = take(varint())
        seq = int.from_bytes(take(4), "little")
        vin.append(
            {
                "txid": prev,
                "vout": vout,
                "scriptSig": {"asm": "", "hex": script.hex()},
                "sequence": seq,
            }
        )
    vout_list = []
    for n in range(varint()):
        sats = int.from_bytes(take(8), "little")
        script = take(varint())
        vout_list.append(
            {"value": sats / SATS_PER_BSV, "n": n, "scriptPubKey": _script_json(script)}
        )
    locktime = int.from_bytes(take(4), "little")
    txid = txid_of(raw)
    return {
        "txid": txid,
        "hash": txid,
        "version": version,
        "size": len(raw),
        "locktime": locktime,
        "vin": vin,
        "vout": vout_list,
    }
