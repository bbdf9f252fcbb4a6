"""The feedback store keeps every labelled row it accepted and never learns from a torn one:
foreign files are ignored, torn rows are recognised by their checksum (also after a writer
is killed mid-batch), and pruning counts real rows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from driftkeeper.model.feedback import CHECK_COLUMN, FeedbackStore
from driftkeeper.schema import DIAMONDS_SCHEMA
from traffic import to_rows


def _write(store: FeedbackStore, frame) -> None:
    store.append(to_rows(frame, with_price=True), "v1", frame["price"].to_numpy())


def test_foreign_files_are_ignored(tmp_path: Path, diamonds) -> None:
    directory = tmp_path / "feedback"
    store = FeedbackStore(directory, DIAMONDS_SCHEMA, max_rows=50, segment_rows=20)
    _write(store, diamonds.head(30))
    store.close()
    (directory / "notes.csv").write_text("not,a,segment\n1,2,3\n")
    (directory / "123.csv").write_text("garbage")
    (directory / "7-8.csv.bak").write_text("old")
    (directory / "9-9.csv").mkdir()  # a directory with a segment's name
    assert len(store.read()) == 30
    assert store.count() == 30
    _write(store, diamonds.iloc[30:90])  # closes segments: pruning runs among the strays
    store.close()
    assert len(store.read()) >= 50
    assert (directory / "notes.csv").is_file() and (directory / "123.csv").is_file()


def test_a_row_changed_after_writing_is_rejected(tmp_path: Path, diamonds) -> None:
    store = FeedbackStore(tmp_path / "fb", DIAMONDS_SCHEMA)
    rows = diamonds.head(3).assign(price=[1500.0, 2500.0, 3500.0])
    _write(store, rows)
    store.close()
    (segment,) = (tmp_path / "fb").glob("*.csv")
    header, first, second, third = segment.read_text().splitlines()
    assert header.split(",")[-1] == CHECK_COLUMN
    # A crash cut the last row inside its price (1500 -> 15) after its checksum: the row
    # still parses, but its checksum no longer matches; and a row torn mid-line.
    cut = first.replace(",1500.0,", ",15,")
    segment.write_text("\n".join([header, cut, second, third[: len(third) // 2]]) + "\n")
    kept = store.read()
    assert list(kept["price"]) == [2500.0]


def test_segments_without_checksums_are_still_read(tmp_path: Path, diamonds) -> None:
    """Stores written before rows carried checksums keep their labels."""
    directory = tmp_path / "fb"
    directory.mkdir()
    rows = diamonds.head(4)
    lines = ["ts,model_version,prediction,carat,cut,color,clarity,depth,table,price"]
    for i, r in enumerate(rows.itertuples()):
        lines.append(f"{1000 + i}.0,v1,{r.price},{r.carat},{r.cut},{r.color},{r.clarity},"
                     f"{r.depth},{r.table},{r.price}")
    (directory / "1-1.csv").write_text("\n".join(lines) + "\n")
    assert len(FeedbackStore(directory, DIAMONDS_SCHEMA).read()) == 4


def test_pruning_counts_real_rows(tmp_path: Path, diamonds) -> None:
    """Segments closed early (a worker restarted) hold fewer rows than segment_rows:
    pruning must not delete labels the bound still has room for."""
    directory = tmp_path / "fb"
    for part in range(6):  # six short segments of 10 rows (each writer closed early)
        store = FeedbackStore(directory, DIAMONDS_SCHEMA, max_rows=100, segment_rows=40)
        _write(store, diamonds.iloc[part * 10:(part + 1) * 10])
        store.close()
        time.sleep(0.002)
    store = FeedbackStore(directory, DIAMONDS_SCHEMA, max_rows=100, segment_rows=40)
    _write(store, diamonds.iloc[60:100])  # a full segment: pruning runs
    store.close()
    assert len(store.read()) == 100  # 60 + 40 <= max_rows + a segment: nothing dropped
    _write(store, diamonds.iloc[100:140])
    store.close()
    kept = len(store.read())
    assert 100 <= kept <= 140


WRITER = """
import sys, numpy as np
from driftkeeper.model.feedback import FeedbackStore
from driftkeeper.schema import DIAMONDS_SCHEMA
store = FeedbackStore(sys.argv[1], DIAMONDS_SCHEMA, segment_rows=10**9)
i = 0
while True:  # rows whose price is a function of their carat, 200 a batch, until killed
    batch = []
    for _ in range(200):
        i += 1
        carat = 0.2 + (i % 1000) / 1000
        batch.append({"carat": carat, "cut": "Ideal", "color": "E", "clarity": "VS1",
                      "depth": 61.5, "table": 55.0, "price": round(carat * 10000, 1)})
    store.append(batch, "v1", np.full(len(batch), 1.0))
    if i == 200:
        print("writing", flush=True)
"""


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_killed_writer_leaves_only_whole_rows(tmp_path: Path, seed: int) -> None:
    directory = tmp_path / "fb"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(directory)],
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert writer.stdout.readline().strip() == "writing"
        time.sleep(np.random.default_rng(seed).uniform(0.05, 0.4))
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=10)
    rows = FeedbackStore(directory, DIAMONDS_SCHEMA).read()
    assert len(rows) >= 200
    # Every row read is a row as written: its price is still its carat's.
    np.testing.assert_allclose(rows["price"], (rows["carat"] * 10000).round(1))


def test_every_row_gets_its_own_increasing_stamp(tmp_path: Path, diamonds) -> None:
    """The retrain splits train and judge rows at a stamp: no two rows may share one, also
    across batches appended within the same microsecond."""
    store = FeedbackStore(tmp_path / "feedback", DIAMONDS_SCHEMA)
    for start in range(0, 5000, 500):
        _write(store, diamonds.iloc[start:start + 500])
    store.close()
    raw = [line.split(",", 1)[0] for path in sorted((tmp_path / "feedback").glob("*.csv"))
           for line in path.read_text().splitlines()[1:]]
    assert len(raw) == 5000
    assert all(len(s.split(".")[1]) == 6 for s in raw)  # exactly six decimals, as written
    stamps = store.read()["ts"].to_numpy()
    assert np.all(np.diff(stamps) > 0)


def test_commit_returns_only_once_the_rows_are_on_disk_and_groups_the_fsyncs(
        tmp_path: Path, diamonds, monkeypatch) -> None:
    """Eight threads append and commit at once (as a worker's request threads do): every
    commit returns after an fsync that covered its rows, and concurrent commits share the
    fsyncs instead of paying one each."""
    import threading

    from driftkeeper.model import feedback as module

    store = FeedbackStore(tmp_path / "fb", DIAMONDS_SCHEMA, commit_delay=0.002)
    calls = [0]
    real = module._fsync
    lock = threading.Lock()

    def fsync(item: object) -> None:
        real(item)
        with lock:
            calls[0] += 1

    monkeypatch.setattr(module, "_fsync", fsync)
    violations: list[int] = []
    rows = diamonds.head(200)

    def client(part: int) -> None:
        for i in range(25):
            batch = rows.iloc[(part * 25 + i) % 190:][:1]
            ticket = store.append(to_rows(batch, with_price=True), "v1",
                                  batch["price"].to_numpy())
            store.commit(ticket)
            if store._durable < ticket:  # returned before an fsync covered its rows
                violations.append(ticket)

    threads = [threading.Thread(target=client, args=(p,)) for p in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    store.close()
    assert not violations
    assert store._durable == store._written == 200
    assert calls[0] < 200  # grouped: far fewer fsyncs than commits
    assert len(store.read()) == 200


def test_a_failed_fsync_fails_the_commit_and_a_later_one_retries(
        tmp_path: Path, diamonds, monkeypatch) -> None:
    from driftkeeper.model import feedback as module

    store = FeedbackStore(tmp_path / "fb", DIAMONDS_SCHEMA, commit_delay=0)
    real = module._fsync
    monkeypatch.setattr(module, "_fsync", lambda item: (_ for _ in ()).throw(
        OSError("I/O error")))
    ticket = store.append(to_rows(diamonds.head(2), with_price=True), "v1",
                          diamonds.head(2)["price"].to_numpy())
    with pytest.raises(OSError, match="I/O error"):
        store.commit(ticket)  # the caller must not acknowledge these rows
    assert store._durable < ticket
    monkeypatch.setattr(module, "_fsync", real)
    store.commit(ticket)
    assert store._durable == ticket
    store.close()


def test_pruning_counts_each_segment_once(tmp_path: Path, diamonds, monkeypatch) -> None:
    from driftkeeper.model import feedback as module

    counted: list[str] = []
    real = module._line_count
    monkeypatch.setattr(module, "_line_count",
                        lambda path: counted.append(path.name) or real(path))
    store = FeedbackStore(tmp_path / "fb", DIAMONDS_SCHEMA, max_rows=100, segment_rows=20)
    for start in range(0, 200, 10):
        store.append(to_rows(diamonds.iloc[start:start + 10], with_price=True), "v1",
                     diamonds.iloc[start:start + 10]["price"].to_numpy(), prune=False)
        if store.prune_due:
            store.prune()
    store.close()
    assert len(counted) == len(set(counted))  # never the same segment twice
    assert 100 <= store.count() <= 120
