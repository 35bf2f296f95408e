"""The analyses and checks of `asg_audit.analyze`, written in pandas as a user would.

Loads the tables from DuckDB into pandas, then computes the same figures: latency summaries
(overall, per day, hour, threshold, worker count, task type), histogram, ECDF, survival,
confidence distribution, agreement rates with Wilson intervals, formula fit, invariants,
margins, cost comparison and model fit, txid health, shared txids, spend per day and month,
and the per-task checks. Used by benchmarks/analyses.py only.
"""

from __future__ import annotations

from typing import Any

import duckdb
import numpy as np
import pandas as pd

Z = 1.959963984540054


def _summary(df: pd.DataFrame, by: str | None, slo: float) -> pd.DataFrame:
    def agg(s: pd.Series) -> pd.Series:
        return pd.Series({
            "n": s.size, "mean_s": s.mean(), "p50_s": s.quantile(0.5), "p90_s": s.quantile(0.9),
            "p95_s": s.quantile(0.95), "p99_s": s.quantile(0.99), "max_s": s.max(),
            "share_over_slo": (s > slo).mean(),
        })  # fmt: skip

    if by is None:
        return agg(df["latency_s"]).to_frame().T
    return df.groupby(by)["latency_s"].apply(agg).unstack()


def _wilson(s: pd.Series, n: pd.Series) -> tuple[pd.Series, pd.Series]:
    p = s / n
    denom = 1 + Z**2 / n
    centre = (p + Z**2 / (2 * n)) / denom
    half = Z * np.sqrt(p * (1 - p) / n + Z**2 / (4 * n**2)) / denom
    return centre - half, centre + half


def analyze_pandas(path: str, slo: float = 60.0) -> dict[str, Any]:
    con = duckdb.connect(path, read_only=True)
    results = con.sql("SELECT * FROM results").df()
    subs = con.sql("SELECT task_id, consensus_threshold, options, created_at AS sub_created "
                   "FROM submissions").df()  # fmt: skip
    con.close()
    df = results.merge(subs, on="task_id", how="left")
    df["created_at"] = df["created_at"].fillna(df["sub_created"])
    df["latency_s"] = (df["settled_at"] - df["created_at"]).dt.total_seconds()
    a, w, t = df["agreement_count"], df["worker_count"], df["consensus_threshold"]
    df["majority"] = np.where((w == 3) & (t > 3), 2, t // 2 + 1)
    df["counts_valid"] = (a >= 1) & (a <= w) & np.where(t.notna(), a >= df["majority"], 2 * a > w)
    settled = df[(df["status"] == "settled") & (df["latency_s"] >= 0)].copy()
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
    ev = np.ceil(settled["latency_s"]).value_counts().sort_index()
    at_risk = ev[::-1].cumsum()[::-1]
    out["survival"] = (1 - ev / at_risk).cumprod()
    conf = df["confidence"].dropna()
    out["confidence"] = (np.floor(conf / 0.05).clip(0, 19) * 0.05).value_counts()
    usable = df[(a >= 1) & (a <= w)]
    for by in (None, "consensus_label", "consensus_threshold"):
        g = usable[["agreement_count", "worker_count"]].sum().to_frame().T if by is None else \
            usable.groupby(by)[["agreement_count", "worker_count"]].sum()  # fmt: skip
        g["rate"] = g["agreement_count"] / g["worker_count"]
        g["low"], g["high"] = _wilson(g["agreement_count"], g["worker_count"])
        out[f"agreement_{by}"] = g
    valid = df[df["counts_valid"] & df["confidence"].notna()]
    fit_t = (
        valid["confidence"] - valid["agreement_count"] / valid["consensus_threshold"]
    ).abs() <= 1e-6
    fit_w = (valid["confidence"] - valid["agreement_count"] / valid["worker_count"]).abs() <= 1e-6
    out["fit"] = {
        "a_over_t": fit_t.mean(),
        "a_over_w": fit_w.mean(),
        "neither": (~fit_t & ~fit_w).mean(),
    }
    label_in = [
        lbl in opts if opts is not None and lbl is not None else True
        for lbl, opts in zip(df["consensus_label"], df["options"], strict=True)
    ]
    out["invariants"] = {"above": (a > w).sum(), "below": ((a <= w) & ~df["counts_valid"]).sum(),
                         "label": (~pd.Series(label_in)).sum()}  # fmt: skip
    margin = 2 * a - w
    out["margins"] = {"ties": (margin == 0).mean(), "low": ((margin > 0) & (margin <= 1)).mean()}
    st = df[df["status"] == "settled"]
    known = st[st["cost_sats"].notna() & st["counts_valid"]].copy()
    known["expected"] = 325 * known["agreement_count"]
    known["diff"] = known["cost_sats"] - known["expected"]
    out["cost_comparison"] = known.groupby(["agreement_count", "expected", "cost_sats"]).size()
    out["unknown"] = st["cost_sats"].isna().sum()
    candidates = {"per_worker_325": 325 * known["agreement_count"], "fixed_1000": 1000,
                  "per_worker_325_fee25": 325 * known["agreement_count"] * 1.25,
                  "fixed_mode": known["cost_sats"].mode().min()}  # fmt: skip
    out["model_fit"] = {
        k: ((known["cost_sats"] - v).abs() <= 0).mean() for k, v in candidates.items()
    }
    well = df["bsv_txid"].str.fullmatch(r"[0-9a-f]{64}") & df["bsv_txid"].str.contains("[1-9a-f]")
    df["well"] = well.fillna(False).astype(bool)
    shared = df[df["well"]].groupby("bsv_txid").agg(
        tasks=("task_id", "size"), total=("cost_sats", "sum"),
        first=("settled_at", "min"), last=("settled_at", "max"))  # fmt: skip
    shared = shared[shared["tasks"] > 1]
    shared["spread_s"] = (shared["last"] - shared["first"]).dt.total_seconds()
    out["shared"] = shared
    for every, key in (("D", "spend_day"), ("MS", "spend_month")):
        period = st["settled_at"].dt.tz_convert("UTC").dt.tz_localize(None).dt.to_period(every[0])
        out[key] = st.groupby(period)["cost_sats"].agg(["size", "sum"])
    # the per-task checks
    findings = [
        df[a > w],
        df[(a <= w) & ~df["counts_valid"]],
        valid[~fit_t & ~fit_w],
        df[~pd.Series(label_in)],
        df[
            df["status"].notna()
            & ~df["status"].isin(["pending", "in_progress", "verified", "settled"])
        ],
        df[df["latency_s"] < 0],
        df[df["conflict_count"] > 0],
        st[st["bsv_txid"].isna()],
        df[df["bsv_txid"].notna() & ~df["well"]],
        known[known["diff"].abs() >= 1],
        shared[shared["spread_s"] >= 300],
    ]
    return {"findings": sum(len(f) for f in findings),
            "p50": float(out["overall"]["p50_s"].iloc[0])}  # fmt: skip
