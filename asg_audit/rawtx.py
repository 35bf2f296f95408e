"""A pure parser of raw Bitcoin/BSV transactions: bytes in, a `ParsedTx` out.

No I/O and no clock. The parser reads the legacy serialisation BSV uses (no segwit marker):

    version (4 LE) | varint n_in | n_in x (prev txid 32 | vout 4 LE | varint len | scriptSig |
    sequence 4 LE) | varint n_out | n_out x (value 8 LE sats | varint len | scriptPubKey) |
    locktime (4 LE)

The txid is sha256(sha256(raw)), byte-reversed, as lowercase hex. Output values are 8-byte
little-endian integers: money never passes through a float here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, Final

from asg_audit.model import MAX_SATS

__all__ = [
    "OutputKind",
    "ParsedTx",
    "RawTxError",
    "TxInput",
    "TxOutput",
    "classify_script",
    "compute_txid",
    "parse_raw_tx",
    "serialise_decoded_tx",
]

_COINBASE_PREV: Final = b"\x00" * 32


class RawTxError(ValueError):
    """The bytes are not a well-formed transaction (truncated, trailing bytes, bad varint)."""


class OutputKind(StrEnum):
    """What an output is, judged from its locking script alone."""

    PAYOUT = "payout"  # P2PKH: OP_DUP OP_HASH160 <20> OP_EQUALVERIFY OP_CHECKSIG
    DATA = "data"  # OP_RETURN or OP_FALSE OP_RETURN: unspendable data carrier
    OTHER = "other"  # anything else (P2SH, bare multisig, custom scripts)


@dataclass(frozen=True, slots=True)
class TxInput:
    """One input: the output it spends and its unlocking script."""

    prev_txid: str  # display order (byte-reversed) hex
    prev_vout: int
    script_sig: bytes
    sequence: int

    @property
    def is_coinbase(self) -> bool:
        """Return whether this is a coinbase input (spends nothing)."""
        return self.prev_txid == "0" * 64 and self.prev_vout == 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class TxOutput:
    """One output: its value in satoshis, locking script and kind."""

    n: int
    value_sats: int
    script: bytes
    kind: OutputKind


@dataclass(frozen=True, slots=True)
class ParsedTx:
    """A parsed transaction with its recomputed txid."""

    txid: str
    version: int
    inputs: tuple[TxInput, ...]
    outputs: tuple[TxOutput, ...]
    locktime: int
    size: int

    @property
    def total_out_sats(self) -> int:
        """Return the sum of all output values."""
        return sum(o.value_sats for o in self.outputs)

    @property
    def non_data_sats(self) -> int:
        """Return the sum of the outputs that are not OP_RETURN data carriers."""
        return sum(o.value_sats for o in self.outputs if o.kind is not OutputKind.DATA)

    @property
    def is_coinbase(self) -> bool:
        """Return whether the transaction is a coinbase."""
        return len(self.inputs) == 1 and self.inputs[0].is_coinbase


def compute_txid(raw: bytes) -> str:
    """Return the txid of raw transaction bytes: double SHA-256, byte-reversed, lowercase hex.

    `raw` is bytes (or a bytearray, memoryview); hex text is a TypeError (`parse_raw_tx` takes
    hex): hashing its characters would give a txid of nothing real.
    """
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise TypeError(
            "compute_txid raw: expected the raw transaction as bytes (bytes.fromhex(text) for"
            f" hex), got {type(raw).__name__}"
        )
    return hashlib.sha256(hashlib.sha256(raw).digest()).digest()[::-1].hex()


def classify_script(script: bytes) -> OutputKind:
    """Return the kind of a locking script: P2PKH payout, OP_RETURN data, or other."""
    if len(script) == 25 and script[:3] == b"\x76\xa9\x14" and script[23:] == b"\x88\xac":
        return OutputKind.PAYOUT
    # OP_RETURN (0x6a) alone or after OP_FALSE (0x00): the two forms BSV data carriers use.
    if script[:1] == b"\x6a" or script[:2] == b"\x00\x6a":
        return OutputKind.DATA
    return OutputKind.OTHER


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if n < 0 or end > len(self.data):
            raise RawTxError(f"truncated: need {n} bytes at offset {self.pos}")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "little")

    def varint(self) -> int:
        first = self.uint(1)
        if first < 0xFD:
            return first
        width = {0xFD: 2, 0xFE: 4, 0xFF: 8}[first]
        value = self.uint(width)
        # A non-canonical varint would let two byte strings encode the same transaction.
        if value < {2: 0xFD, 4: 0x10000, 8: 0x100000000}[width]:
            raise RawTxError(f"non-canonical varint at offset {self.pos - width - 1}")
        return value


def parse_raw_tx(raw: bytes | str) -> ParsedTx:
    """Return the parsed transaction of raw bytes (or their hex); raise RawTxError if malformed.

    `raw` is bytes (a bytearray or memoryview too) or hex text; anything else is a TypeError
    naming it.
    """
    if isinstance(raw, str):
        try:
            raw = bytes.fromhex(raw)
        except ValueError:
            raise RawTxError("not hex") from None
    elif isinstance(raw, bytearray | memoryview):
        raw = bytes(raw)
    elif not isinstance(raw, bytes):
        raise TypeError(f"parse_raw_tx raw: expected bytes or hex text, got {type(raw).__name__}")
    r = _Reader(raw)
    version = r.uint(4)
    n_in = r.varint()
    if n_in == 0:
        # Zero inputs is the segwit marker; BSV never uses it and a real tx always spends.
        raise RawTxError("no inputs (segwit serialisation is not supported)")
    inputs = []
    for _ in range(n_in):
        prev = r.take(32)[::-1].hex()
        vout = r.uint(4)
        script = r.take(r.varint())
        inputs.append(TxInput(prev, vout, script, r.uint(4)))
    n_out = r.varint()
    if n_out == 0:
        # Consensus refuses a transaction with no outputs (`bad-txns-vout-empty`): it pays no
        # one, so it cannot be the payment of anything on chain.
        raise RawTxError("no outputs (consensus refuses a transaction that pays no one)")
    outputs = []
    total = 0
    for n in range(n_out):
        value = r.uint(8)
        total += value
        if value > MAX_SATS or total > MAX_SATS:
            raise RawTxError(
                f"output {n}: value {value}"
                + ("" if value > MAX_SATS else f" brings the outputs' sum to {total}")
                + " exceeds the 21M BSV supply"
            )
        script = r.take(r.varint())
        outputs.append(TxOutput(n, value, script, classify_script(script)))
    locktime = r.uint(4)
    if r.pos != len(raw):
        raise RawTxError(f"{len(raw) - r.pos} trailing bytes after the locktime")
    return ParsedTx(
        txid=compute_txid(raw),
        version=version,
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        locktime=locktime,
        size=len(raw),
    )


def _varint(n: int) -> bytes:
    if n < 0xFD:
        return bytes([n])
    if n <= 0xFFFF:
        return b"\xfd" + n.to_bytes(2, "little")
    if n <= 0xFFFFFFFF:
        return b"\xfe" + n.to_bytes(4, "little")
    return b"\xff" + n.to_bytes(8, "little")


def _sats(value: Any) -> int:
    # WoC gives BSV as a JSON float; str() gives its shortest round-trip decimal.
    try:
        sats = Decimal(str(value)) * 100_000_000
    except InvalidOperation:
        raise RawTxError(f"output value {value!r} is not a number") from None
    if sats != sats.to_integral_value() or not (0 <= sats <= MAX_SATS):
        raise RawTxError(f"output value {value!r} is not a whole number of satoshis")
    return int(sats)


def serialise_decoded_tx(decoded: dict[str, Any]) -> bytes | None:
    """Return the raw bytes a WoC decoded transaction describes, or None if it cannot tell.

    WoC's decoded JSON carries every serialised field (scripts as hex, values in BSV), so the
    raw transaction can be rebuilt and hashed: one bulk call then gives both the block fields
    and bytes we can check against the txid. None when a script is truncated or a field is
    missing (the caller then asks for the raw hex).
    """
    if isinstance(decoded.get("hex"), str):
        try:
            return bytes.fromhex(decoded["hex"])
        except ValueError:
            return None
    try:
        parts = [int(decoded["version"]).to_bytes(4, "little"), _varint(len(decoded["vin"]))]
        for vin in decoded["vin"]:
            if "coinbase" in vin:
                script = bytes.fromhex(vin["coinbase"])
                parts += [_COINBASE_PREV, b"\xff\xff\xff\xff"]
            else:
                script = bytes.fromhex(vin["scriptSig"]["hex"])
                parts += [bytes.fromhex(vin["txid"])[::-1], int(vin["vout"]).to_bytes(4, "little")]
            parts += [_varint(len(script)), script, int(vin["sequence"]).to_bytes(4, "little")]
        parts.append(_varint(len(decoded["vout"])))
        for vout in decoded["vout"]:
            spk = vout["scriptPubKey"]
            if spk.get("isTruncated"):
                return None
            script = bytes.fromhex(spk["hex"])
            parts += [_sats(vout["value"]).to_bytes(8, "little"), _varint(len(script)), script]
        parts.append(int(decoded["locktime"]).to_bytes(4, "little"))
    # AttributeError: a field of the wrong JSON type (`"scriptPubKey": null`, a list for an
    # input) is a garbled answer, not a crash: ask for the raw hex instead.
    except (AttributeError, KeyError, TypeError, ValueError, OverflowError):
        return None
    return b"".join(parts)
