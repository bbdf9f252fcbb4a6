"""Rows from the diamonds table as JSON request bodies, and a small concurrent sender."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd
import requests

FEATURES = ["carat", "cut", "color", "clarity", "depth", "table"]


def to_rows(frame: pd.DataFrame, with_price: bool = False) -> list[dict[str, Any]]:
    cols = FEATURES + (["price"] if with_price else [])
    out = frame[cols].astype({"cut": str, "color": str, "clarity": str})
    return [{k: (v if isinstance(v, str) else float(v)) for k, v in r.items()}
            for r in out.to_dict("records")]


def send_each(url: str, rows: list[dict[str, Any]], concurrency: int = 8,
              fresh_connections: bool = False) -> list[int]:
    """POST every row on its own; return statuses.

    Kept-alive connections stay with the worker that accepted them (one gthread worker may
    take all eight); ``fresh_connections`` opens one per request so every request is a new
    accept that any worker may win, spreading rows over the workers.
    """
    local = threading.local()

    def post(row: dict[str, Any]) -> int:
        if fresh_connections:
            return requests.post(url, json=row, timeout=10,
                                 headers={"Connection": "close"}).status_code
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        return session.post(url, json=row, timeout=10).status_code

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(post, rows))


def send_batches(url: str, rows: list[dict[str, Any]], size: int = 200) -> None:
    with requests.Session() as session:
        for i in range(0, len(rows), size):
            resp = session.post(url, json={"instances": rows[i:i + size]}, timeout=30)
            resp.raise_for_status()
