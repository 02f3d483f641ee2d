#!/usr/bin/env python3
"""What one execution's commit costs on SQLite under other page sizes and
audit-table layouts, side by side with the layout before migration 0006 (composite keys, 4 KiB
pages).

Each commit writes what a quick execution writes: one execution row, two
audit events with their payloads and salts, two leaves, four interior hashes
and the log head, with WAL and synchronous = FULL, a passive checkpoint every
64 commits (as the store's writer does). Prints the commit's p50 and mean
over the second half of the run, the WAL frames and bytes per commit, and the
ratio of each p50 to the layout in use.

Run: python3 crates/thetazero-store-sqlite/bench/commit_layout.py [commits]
"""

import os
import sqlite3
import statistics
import sys
import tempfile
import time

ACCOUNT = 1


def schema(c, layout):
    if layout == "without rowid":
        c.execute(
            "CREATE TABLE leaves (account_id INTEGER, leaf_index INTEGER, leaf_bytes BLOB,"
            " leaf_hash BLOB, PRIMARY KEY (account_id, leaf_index)) WITHOUT ROWID"
        )
        c.execute(
            "CREATE TABLE hashes (account_id INTEGER, storage_index INTEGER, hash BLOB,"
            " PRIMARY KEY (account_id, storage_index)) WITHOUT ROWID"
        )
    else:  # the key packs account and index into the rowid
        c.execute("CREATE TABLE leaves (k INTEGER PRIMARY KEY, leaf_bytes BLOB, leaf_hash BLOB)")
        c.execute("CREATE TABLE hashes (k INTEGER PRIMARY KEY, hash BLOB)")
    c.execute(
        "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, account_id INT, ts INT,"
        " execution_id INT, body TEXT)"
    )
    c.execute("CREATE INDEX events_time ON events (account_id, ts)")
    c.execute("CREATE INDEX events_execution ON events (execution_id)")
    c.execute("CREATE TABLE payloads (audit_id INTEGER PRIMARY KEY, payload TEXT)")
    c.execute("CREATE TABLE salts (audit_id INTEGER PRIMARY KEY, salt BLOB)")
    c.execute("CREATE TABLE executions (id INTEGER PRIMARY KEY AUTOINCREMENT, agent_id INT, body TEXT)")
    c.execute("CREATE INDEX executions_agent ON executions (agent_id, id)")
    c.execute("CREATE TABLE heads (account_id INTEGER PRIMARY KEY, size INT)")
    c.execute("INSERT INTO heads VALUES (?, 0)", (ACCOUNT,))


def run(directory, page, layout, commits):
    path = os.path.join(directory, f"{page}-{layout.replace(' ', '-')}.db")
    c = sqlite3.connect(path, isolation_level=None)
    c.execute(f"PRAGMA page_size = {page}")
    c.execute("PRAGMA journal_mode = WAL")
    c.execute("PRAGMA synchronous = FULL")
    c.execute("PRAGMA wal_autocheckpoint = 0")
    schema(c, layout)
    packed = layout != "without rowid"
    leaf = hashes = 0
    times = []

    def commit():
        nonlocal leaf, hashes
        c.execute("BEGIN IMMEDIATE")
        c.execute("INSERT INTO executions (agent_id, body) VALUES (1, ?)", ("x" * 600,))
        for _ in range(2):
            cur = c.execute(
                "INSERT INTO events (account_id, ts, execution_id, body) VALUES (?, ?, ?, ?)",
                (ACCOUNT, time.time_ns(), leaf, "y" * 350),
            )
            c.execute("INSERT INTO payloads VALUES (?, ?)", (cur.lastrowid, "z" * 300))
            c.execute("INSERT INTO salts VALUES (?, ?)", (cur.lastrowid, os.urandom(32)))
            if packed:
                c.execute("INSERT INTO leaves VALUES (?, ?, ?)", ((ACCOUNT << 40) | leaf, os.urandom(450), os.urandom(32)))
            else:
                c.execute("INSERT INTO leaves VALUES (?, ?, ?, ?)", (ACCOUNT, leaf, os.urandom(450), os.urandom(32)))
            leaf += 1
            for _ in range(2):
                if packed:
                    c.execute("INSERT INTO hashes VALUES (?, ?)", ((ACCOUNT << 40) | hashes, os.urandom(32)))
                else:
                    c.execute("INSERT INTO hashes VALUES (?, ?, ?)", (ACCOUNT, hashes, os.urandom(32)))
                hashes += 1
        c.execute("UPDATE heads SET size = ? WHERE account_id = ?", (leaf, ACCOUNT))
        t = time.perf_counter()
        c.execute("COMMIT")
        times.append(time.perf_counter() - t)

    for i in range(commits):
        commit()
        if i % 64 == 63:
            c.execute("PRAGMA wal_checkpoint(PASSIVE)")
        if i == commits // 2:
            times.clear()
    timed = sorted(times)
    # Frames per commit: a WAL started over, then a stretch without checkpoints.
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    stretch = 500
    for _ in range(stretch):
        commit()
    frames = os.path.getsize(path + "-wal") / (page + 24) / stretch
    c.close()
    return timed[len(timed) // 2], statistics.mean(timed), frames


def main():
    commits = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
    variants = [
        (4096, "without rowid"),  # the baseline: what migration 0006 replaced
        (4096, "packed rowid"),  # an older database after 0006
        (2048, "without rowid"),
        (2048, "packed rowid"),  # a new database
        (1024, "packed rowid"),
    ]
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as d:
        results = [(p, l, *run(d, p, l, commits)) for p, l in variants]
    base = results[0][2]
    print(f"one execution's commit on SQLite (WAL, synchronous = FULL), {commits} commits each")
    print(f"{'page':>6} {'audit tables':<14} {'p50 µs':>8} {'mean µs':>8} {'frames':>7} {'KB':>6} {'p50 ratio':>10}")
    for page, layout, p50, mean, frames in results:
        print(
            f"{page:>6} {layout:<14} {p50 * 1e6:>8.0f} {mean * 1e6:>8.0f} {frames:>7.1f}"
            f" {frames * (page + 24) / 1024:>6.1f} {p50 / base:>10.2f}"
        )


if __name__ == "__main__":
    main()
