"""Regenerate the demo table data: tickets.db (SQLite) and sales.csv.

Deterministic (fixed seed and dates), so the committed files only change when this script does::

    python deploy/demo/data/make_demo_data.py
"""

from __future__ import annotations

import csv
import datetime as dt
import random
import sqlite3
from pathlib import Path

HERE = Path(__file__).parent
TEAMS = [
    ("platform", "Ana Ruiz", "#platform"),
    ("payments", "Wei Chen", "#payments"),
    ("mobile", "Sam Okafor", "#mobile"),
    ("support", "Lena Vogel", "#support"),
    ("data", "Ravi Patel", "#data"),
]
TOPICS = [
    "login fails",
    "slow page",
    "crash on start",
    "wrong total",
    "export broken",
    "timeout",
    "typo",
    "missing data",
    "alert noise",
    "flaky test",
    "upgrade",
    "permissions",
]
PRIORITIES = [("low", 0.3), ("medium", 0.4), ("high", 0.22), ("urgent", 0.08)]
START = dt.date(2026, 5, 1)
END = dt.date(2026, 11, 20)


def make_tickets(path: Path, n: int = 500) -> None:
    """Write teams and tickets tables."""
    rng = random.Random(42)
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE teams (name TEXT PRIMARY KEY, lead TEXT NOT NULL, channel TEXT NOT NULL);
        CREATE TABLE tickets (
            id INTEGER PRIMARY KEY,
            team TEXT NOT NULL REFERENCES teams(name),
            title TEXT NOT NULL,
            priority TEXT NOT NULL,
            status TEXT NOT NULL,
            opened DATE NOT NULL,
            closed DATE
        );
        """
    )
    conn.executemany("INSERT INTO teams VALUES (?, ?, ?)", TEAMS)
    span = (END - START).days
    weights = [0.3, 0.25, 0.2, 0.15, 0.1]
    for i in range(1, n + 1):
        team = rng.choices([t[0] for t in TEAMS], weights)[0]
        priority = rng.choices([p for p, _ in PRIORITIES], [w for _, w in PRIORITIES])[0]
        opened = START + dt.timedelta(days=rng.randrange(span))
        days_open = int(rng.expovariate(1 / 6))
        closed = opened + dt.timedelta(days=days_open)
        is_closed = closed <= END and rng.random() < 0.85
        conn.execute(
            "INSERT INTO tickets VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                i,
                team,
                f"{rng.choice(TOPICS)} #{i}",
                priority,
                "closed" if is_closed else "open",
                opened.isoformat(),
                closed.isoformat() if is_closed else None,
            ),
        )
    conn.commit()
    conn.execute("VACUUM")
    conn.close()


def make_sales(path: Path) -> None:
    """Write monthly sales per region and product."""
    rng = random.Random(7)
    regions = ["north", "south", "east", "west"]
    products = {"basic": 19.0, "team": 49.0, "enterprise": 199.0}
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["month", "region", "product", "units", "revenue"])
        for m in range(12):
            month = dt.date(2025 + (10 + m) // 12, (10 + m) % 12 + 1, 1)
            for region in regions:
                for product, price in products.items():
                    units = max(
                        0, int(rng.gauss(120 if product == "basic" else 40 if product == "team" else 8, 10))
                    )
                    writer.writerow([month.isoformat(), region, product, units, round(units * price, 2)])


if __name__ == "__main__":
    make_tickets(HERE / "tickets.db")
    make_sales(HERE / "sales.csv")
    print(f"wrote {HERE / 'tickets.db'} and {HERE / 'sales.csv'}")
