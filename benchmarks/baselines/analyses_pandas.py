"""The analyses and checks of `asg_audit.analyze`, written in pandas as a user would.

Reads from DuckDB only the columns the figures use, with compact dtypes (pandas 3 `str`
columns, categories for the low-cardinality strings, a submission's options as one
category value), merges results with submissions, then computes the same figures: latency
summaries (overall, per day, hour, threshold, worker count, task type), histogram, ECDF,
survival (unsettled tasks censored), ageing, confidence distribution, agreement rates with
Wilson intervals, formula fit, invariants, margins, cost comparison and model fit, unknown
costs, txid health, shared txids, spend per day and month, source coverage, and the per-task
checks. Used by benchmarks/analyses.py only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

Z = 1.959963984540054
_SEP = "\x1f"


def _summary(df: pd.DataFrame, by: str | None, slo: float) -> pd.DataFrame:
    def agg(s: pd.Series) -> pd.Series:
        return pd.Series({
            "n": s.size, "mean_s": s.mean(), "p50_s": s.quantile(0.5), "p90_s": s.quantile(0.9),
            "p95_s": s.quantile(0.95), "p99_s": s.quantile(0.99), "max_s": s.max(),
            "share_over_slo": (s > slo).mean(),
        })  # fmt: skip

    if by is None:
        return agg(df["latency_s"]).to_frame().T
    return df.groupby(by, observed=True)["latency_s"].apply(agg).unstack()


def _wilson(s: pd.Series, n: pd.Series) -> tuple[pd.Series, pd.Series]:
    p = s / n
    denom = 1 + Z**2 / n
    centre = (p + Z**2 / (2 * n)) / denom
    half = Z * np.sqrt(p * (1 - p) / n + Z**2 / (4 * n**2)) / denom
    return centre - half, centre + half


def _query(con: duckdb.DuckDBPyConnection, sql: str) -> pd.DataFrame:
    # Through Arrow (pandas 3 keeps strings Arrow-backed; `.df()` goes through Python objects
    # and needs several times the memory); nullable integers stay integers.
    table = con.sql(sql).arrow()
    table = table.read_all() if hasattr(table, "read_all") else table
    return table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)


def _read(path: str) -> pd.DataFrame:
    con = duckdb.connect(path, read_only=True)
    # Lists become one string each (a category): a column of 10M Python lists does not fit.
    results = _query(
        con,
        "SELECT task_id, status, consensus_label, confidence, worker_count, agreement_count,"
        " bsv_txid, cost_sats, cost_unknown, task_type, created_at, settled_at,"
        " array_to_string(sources, ',') AS sources, conflict_count FROM results",
    )
    subs = _query(
        con,
        f"SELECT task_id, consensus_threshold, array_to_string(options, '{_SEP}') AS options,"
        " created_at AS sub_created FROM submissions",
    )
    con.close()
    for col in ("status", "consensus_label", "task_type", "sources"):
        results[col] = results[col].astype("category")
    subs["options"] = subs["options"].astype("category")
    return results.merge(subs, on="task_id", how="left")


def analyze_pandas(path: str, slo: float = 60.0, as_of: datetime | None = None) -> dict[str, Any]:
    df = _read(path)
    as_of_ts = pd.Timestamp(as_of) if as_of is not None else df["settled_at"].max()
    df["created_at"] = df["created_at"].fillna(df["sub_created"])
    df["latency_s"] = (df["settled_at"] - df["created_at"]).dt.total_seconds()
    a, w, t = df["agreement_count"], df["worker_count"], df["consensus_threshold"]
    df["majority"] = np.where((w == 3) & (t > 3), 2, t // 2 + 1)
    df["counts_valid"] = (a >= 1) & (a <= w) & np.where(t.notna(), a >= df["majority"], 2 * a > w)
    is_settled = df["status"] == "settled"
    # only the columns each step uses: copies of all columns of 10M rows do not fit
    settled = df.loc[
        is_settled & (df["latency_s"] >= 0),
        ["latency_s", "created_at", "consensus_threshold", "worker_count", "task_type"],
    ]
    out: dict[str, Any] = {}
    out["overall"] = _summary(settled, None, slo)
    settled["day"] = settled["created_at"].dt.date
    settled["hour"] = settled["created_at"].dt.hour
    for by in ("day", "hour", "consensus_threshold", "worker_count", "task_type"):
        out[f"by_{by}"] = _summary(settled, by, slo)
    lower = np.floor(settled["latency_s"] / 5) * 5
    hist = lower.value_counts().sort_index()
    out["histogram"] = pd.DataFrame({"count": hist, "cum_share": hist.cumsum() / hist.sum()})
    ecdf = np.ceil(settled["latency_s"]).value_counts().sort_index()
    out["ecdf"] = ecdf.cumsum() / ecdf.sum()
    # Kaplan-Meier: settled tasks are events, unsettled ones censored at as_of
    unsettled = df.loc[
        ~is_settled & df["status"].notna() & df["created_at"].notna(), ["created_at", "status"]
    ]
    age = (as_of_ts - unsettled["created_at"]).dt.total_seconds()
    ev = np.ceil(settled["latency_s"]).value_counts()
    cens = np.ceil(age).value_counts()
    km = pd.DataFrame({"events": ev, "censored": cens}).fillna(0).sort_index()
    leaving = km["events"] + km["censored"]
    km["at_risk"] = leaving.sum() - leaving.cumsum() + leaving
    out["survival"] = (1 - km["events"] / km["at_risk"]).cumprod()
    edges = [0, 60, 300, 900, 3600, 6 * 3600, 24 * 3600, np.inf]
    out["ageing"] = unsettled.groupby(
        [pd.cut(age, edges, right=False), unsettled["status"]], observed=True
    ).size()
    conf = df["confidence"].dropna()
    out["confidence"] = (np.floor(conf / 0.05).clip(0, 19) * 0.05).value_counts()
    usable = df.loc[
        (a >= 1) & (a <= w),
        ["agreement_count", "worker_count", "consensus_label", "consensus_threshold"],
    ]
    for by in (None, "consensus_label", "consensus_threshold"):
        counts = usable[["agreement_count", "worker_count"]]
        if by is None:
            g = counts.sum().to_frame().T
        else:
            g = counts.groupby(usable[by], observed=True).sum()
        g["rate"] = g["agreement_count"] / g["worker_count"]
        g["low"], g["high"] = _wilson(g["agreement_count"], g["worker_count"])
        out[f"agreement_{by}"] = g
    valid = df.loc[
        df["counts_valid"] & df["confidence"].notna(),
        ["task_id", "confidence", "agreement_count", "worker_count", "consensus_threshold"],
    ]
    fit_t = (
        valid["confidence"] - valid["agreement_count"] / valid["consensus_threshold"]
    ).abs() <= 1e-6
    fit_w = (valid["confidence"] - valid["agreement_count"] / valid["worker_count"]).abs() <= 1e-6
    out["fit"] = {
        "a_over_t": fit_t.mean(),
        "a_over_w": fit_w.mean(),
        "neither": (~fit_t & ~fit_w).mean(),
    }
    # label in options: decided once per distinct (options, label) pair
    pairs = df[["options", "consensus_label"]].drop_duplicates().dropna()
    pairs["outside"] = [
        bool(opts) and lbl not in opts.split(_SEP)
        for opts, lbl in zip(pairs["options"], pairs["consensus_label"], strict=True)
    ]
    outside = (
        df[["options", "consensus_label"]]
        .merge(pairs, on=["options", "consensus_label"], how="left")["outside"]
        .fillna(False)
        .astype(bool)
        .to_numpy()
    )
    out["invariants"] = {"above": (a > w).sum(), "below": ((a <= w) & ~df["counts_valid"]).sum(),
                         "label": outside.sum()}  # fmt: skip
    margin = 2 * a - w
    out["margins"] = {"ties": (margin == 0).mean(), "low": ((margin > 0) & (margin <= 1)).mean()}
    st = df.loc[is_settled, ["task_id", "cost_sats", "cost_unknown", "bsv_txid", "settled_at"]]
    known = df.loc[
        is_settled & df["cost_sats"].notna() & df["counts_valid"],
        ["task_id", "agreement_count", "cost_sats"],
    ]
    known["expected"] = 325 * known["agreement_count"]
    known["diff"] = known["cost_sats"] - known["expected"]
    out["cost_comparison"] = known.groupby(["agreement_count", "expected", "cost_sats"]).size()
    out["unknown"] = (st["cost_unknown"].fillna(False) | st["cost_sats"].isna()).sum()
    candidates = {"per_worker_325": 325 * known["agreement_count"], "fixed_1000": 1000,
                  "per_worker_325_fee25": 325 * known["agreement_count"] * 1.25,
                  "fixed_mode": known["cost_sats"].mode().min()}  # fmt: skip
    out["model_fit"] = {
        k: ((known["cost_sats"] - v).abs() <= 0).mean() for k, v in candidates.items()
    }
    tx = df["bsv_txid"]
    well = tx.str.fullmatch(r"[0-9a-f]{64}") & tx.str.contains("[1-9a-f]")
    df["well"] = well.fillna(False).astype(bool)
    out["txid_health"] = {"well": df.loc[is_settled, "well"].sum(),
                          "missing": st["bsv_txid"].isna().sum()}  # fmt: skip
    # only txids that occur more than once (grouping all 10M txids does not fit)
    reused = df.loc[
        df["well"] & df["bsv_txid"].duplicated(keep=False),
        ["bsv_txid", "task_id", "cost_sats", "settled_at"],
    ]
    shared = reused.groupby("bsv_txid").agg(
        tasks=("task_id", "size"), total=("cost_sats", "sum"),
        first=("settled_at", "min"), last=("settled_at", "max"))  # fmt: skip
    shared = shared[shared["tasks"] > 1]
    shared["spread_s"] = (shared["last"] - shared["first"]).dt.total_seconds()
    ids = reused[reused["bsv_txid"].isin(shared.index)].sort_values("task_id")
    shared["task_ids"] = ids.groupby("bsv_txid")["task_id"].agg(list)
    out["shared"] = shared
    for every, key in (("D", "spend_day"), ("M", "spend_month")):
        period = st["settled_at"].dt.tz_convert("UTC").dt.tz_localize(None).dt.to_period(every)
        out[key] = st.groupby(period)["cost_sats"].agg(["size", "sum"])
    out["coverage"] = df.groupby("sources", observed=True).size()
    # the per-task checks
    active = df["status"].isin(["pending", "in_progress"])
    stuck_age = (as_of_ts - df["created_at"]).dt.total_seconds()
    findings = [
        df[a > w],
        df[(a <= w) & ~df["counts_valid"]],
        valid[~fit_t & ~fit_w],
        df[outside],
        df[
            df["status"].notna()
            & ~df["status"].isin(["pending", "in_progress", "verified", "settled"])
        ],
        df[active & (stuck_age >= 3600)],
        df[df["latency_s"] < 0],
        df[df["conflict_count"] > 0],
        st[st["bsv_txid"].isna()],
        df[df["bsv_txid"].notna() & ~df["well"]],
        known[known["diff"].abs() >= 1],
        shared[shared["spread_s"] >= 300],
    ]
    n_findings = sum(len(f) for f in findings)
    n_findings += int(out["unknown"] > 0)  # cost.unknown: one dataset row
    mean = out["overall"]["mean_s"].iloc[0]
    n_findings += int(mean < 29 or mean > 61)  # latency.mean_outside_documented
    n_findings += int(out["overall"]["share_over_slo"].iloc[0] >= 0.5)
    return {"findings": n_findings, "p50": float(out["overall"]["p50_s"].iloc[0])}
