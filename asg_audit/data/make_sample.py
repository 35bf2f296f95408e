"""Regenerate the bundled sample export and submissions (run from the repository root)."""

import csv
import hashlib
import json
import random
from datetime import UTC, datetime, timedelta

r = random.Random(20260408)
start = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
types = {
    "image_classification": ["cat", "dog", "bird"],
    "sentiment": ["positive", "negative", "neutral"],
    "toxicity": ["toxic", "ok"],
}
subs, lines = [], []


def iso(t: datetime) -> str:
    return (
        t.strftime("%Y-%m-%dT%H:%M:%S")
        + (f".{t.microsecond // 1000:03d}" if t.microsecond else "")
        + "Z"
    )


batch_txid = None
for i in range(1, 181):
    tid = f"tsk_{i:05d}"
    tt = r.choice(list(types))
    T = r.choices([2, 3, 5, 7], weights=[1, 6, 2, 1])[0]
    created = start + timedelta(minutes=r.uniform(0, 60 * 24 * 10))
    subs.append(
        {
            "task_id": tid,
            "task_type": tt,
            "consensus_threshold": T,
            "options": "|".join(types[tt]),
            "created_at": iso(created),
        }
    )
    lat = r.lognormvariate(3.74, 0.35)
    settled = created + timedelta(seconds=lat)
    W = T
    maj = T // 2 + 1
    A = r.randint(maj, W)
    label = r.choice(types[tt])
    txid = hashlib.sha256(f"{tid}".encode()).hexdigest()
    if i % 10 in (3, 4) and batch_txid:  # a batched payment
        txid = batch_txid
    batch_txid = txid
    cost = 325 * A
    if i % 37 == 0:
        cost = 0
    status = "settled"
    if i > 170:
        status = r.choice(["pending", "in_progress"])
    if status != "settled":
        lines.append(json.dumps({"task_id": tid, "status": status, "created_at": iso(created)}))
        continue
    if i % 2:
        rec = {
            "task_id": tid,
            "status": "settled",
            "consensus_label": label,
            "confidence": A / W,
            "worker_count": W,
            "agreement_count": A,
            "bsv_txid": txid,
            "total_cost_sats": cost,
            "created_at": iso(created),
            "settled_at": iso(settled),
        }
    else:
        rec = {
            "task_id": tid,
            "status": "settled",
            "consensus_label": label,
            "confidence": A / W,
            "worker_count": W,
            "agreement_count": A,
            "type": tt,
            "created_at": iso(created),
            "settlement": {"bsv_txid": txid, "total_cost_sats": cost, "settled_at": iso(settled)},
        }
    lines.append(json.dumps(rec))
# a few lines that cannot be used, as a real export sometimes has
lines.insert(20, '{"task_id": "tsk_09001", "status": "settled", "worker_count": "3"')
lines.insert(
    50,
    '{"task_id": "tsk_09002", "status": "settled", "consensus_label": "cat", '
    '"worker_count": "three", "agreement_count": 2}',
)
lines.insert(
    90,
    '{"task_id": "tsk_09003", "status": "settled", "settlement": {"bsv_txid": "'
    + "c" * 64
    + '", "total_cost_sats": -650}}',
)
lines.insert(120, '{"status": "in_progress", "message": "Task is still being labeled."}')
lines.insert(
    150, '{"task_id": "tsk_09004", "status": "settled", "created_at": "2026-02-30T10:00:00Z"}'
)
with open("asg_audit/data/sample_results.jsonl", "w") as out:
    out.write("\n".join(lines) + "\n")
with open("asg_audit/data/sample_submissions.csv", "w", newline="") as fh:
    w = csv.DictWriter(fh, fieldnames=list(subs[0]))
    w.writeheader()
    w.writerows(subs)
print(len(lines))
