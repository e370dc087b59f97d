"""Finding and reading benchmark data: an explicit path, ``$BRITE_DATA_DIR``, or the hub.

Every record keeps the file and line it came from, so that a malformed record raises an
error naming the file, the line and the field instead of being dropped.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import socket
import urllib.parse
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brite_envs.errors import DataNotAvailableError, MalformedRecordError

DATA_DIR_ENV = "BRITE_DATA_DIR"


@dataclass(frozen=True)
class HubSource:
    """A dataset on the Hugging Face hub, loaded with ``datasets.load_dataset``."""

    dataset: str
    config: str | None = None
    split: str = "test"


@dataclass(frozen=True)
class DataSource:
    """Where one split of a benchmark lives: a file under ``$BRITE_DATA_DIR/<folder>/``
    (laid out like the project's shared data folder) and, optionally, on the hub."""

    folder: str
    filename: str
    hub: HubSource | None = None
    member: str | None = None
    """For zip archives: the file inside the archive to read."""
    password: str | None = None
    """For encrypted zip archives (GPQA ships with a public password to keep it off the web)."""


@dataclass(frozen=True)
class Record:
    """One raw dataset row and where it came from."""

    file: str
    line: int
    data: Mapping[str, Any]

    def _get(self, name: str, optional: bool) -> Any:
        if name not in self.data or self.data[name] is None:
            if optional:
                return None
            raise MalformedRecordError(self.file, self.line, name, "is missing")
        return self.data[name]

    def str_field(self, name: str, *, optional: bool = False, allow_empty: bool = False) -> Any:
        """The field as a string; a number is accepted and converted (AMC answers are numbers)."""
        value = self._get(name, optional)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise MalformedRecordError(
                self.file, self.line, name, f"must be a string, got {type(value).__name__}"
            )
        text = value if isinstance(value, str) else _number_text(value)
        if not allow_empty and not text.strip():
            raise MalformedRecordError(self.file, self.line, name, "is empty")
        return text

    def int_field(self, name: str, *, optional: bool = False) -> Any:
        value = self._get(name, optional)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise MalformedRecordError(
                self.file, self.line, name, f"must be an integer, got {type(value).__name__}"
            )
        try:
            return int(value)
        except ValueError:
            raise MalformedRecordError(
                self.file, self.line, name, f"must be an integer, got {value!r}"
            ) from None

    def list_field(self, name: str, *, optional: bool = False) -> Any:
        value = self._get(name, optional)
        if value is None:
            return None
        if not isinstance(value, list):
            raise MalformedRecordError(
                self.file, self.line, name, f"must be a list, got {type(value).__name__}"
            )
        return value


def _number_text(value: float | int) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def data_dir() -> Path | None:
    """The folder named by ``$BRITE_DATA_DIR``, if set."""
    value = os.environ.get(DATA_DIR_ENV)
    return Path(value).expanduser() if value else None


def locate(source: DataSource, path: str | os.PathLike[str] | None = None) -> Path | None:
    """The local file for ``source``: ``path`` (a file, or a folder holding the file
    directly or under ``<folder>/``), else ``$BRITE_DATA_DIR/<folder>/<filename>``."""
    if path is not None:
        p = Path(path).expanduser()
        candidates = (
            [p] if p.is_file() else [p / source.filename, p / source.folder / source.filename]
        )
        for c in candidates:
            if c.is_file():
                return c
        raise DataNotAvailableError(
            f"no data file for {source.folder!r} at {p}: expected a file, or a folder holding "
            f"{source.filename} or {source.folder}/{source.filename}"
        )
    root = data_dir()
    if root is not None:
        c = root / source.folder / source.filename
        if c.is_file():
            return c
    return None


def _open_text(path: Path, source: DataSource | None) -> io.TextIOBase:
    name = path.name
    if name.endswith(".zip"):
        if source is None or source.member is None:
            raise DataNotAvailableError(f"{path}: a zip archive needs DataSource.member to be set")
        archive = zipfile.ZipFile(path)
        pwd = source.password.encode() if source.password else None
        return io.TextIOWrapper(archive.open(source.member, pwd=pwd), encoding="utf-8")
    if name.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


def read_file(path: Path, source: DataSource | None = None) -> Iterator[Record]:
    """Yield the records of a .jsonl(.gz), .json or .csv file (or a csv/jsonl inside a zip)."""
    inner = source.member if (source is not None and source.member) else path.name
    shown = f"{path}!{source.member}" if path.name.endswith(".zip") and source else str(path)
    inner = inner.removesuffix(".gz")
    with _open_text(path, source) as fh:
        if inner.endswith(".csv"):
            reader = csv.DictReader(fh)
            for i, row in enumerate(reader, start=2):  # line 1 is the header
                yield Record(shown, i, row)
        elif inner.endswith(".json"):
            rows = json.load(fh)
            if not isinstance(rows, list):
                raise MalformedRecordError(shown, 1, "<root>", "must be a JSON list of records")
            for i, row in enumerate(rows, start=1):
                if not isinstance(row, dict):
                    raise MalformedRecordError(shown, i, "<record>", "must be a JSON object")
                yield Record(shown, i, row)
        else:
            for i, text in enumerate(fh, start=1):
                if not text.strip():
                    continue
                try:
                    row = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise MalformedRecordError(
                        shown, i, "<record>", f"is not valid JSON ({exc.msg} at column {exc.colno})"
                    ) from None
                if not isinstance(row, dict):
                    raise MalformedRecordError(shown, i, "<record>", "must be a JSON object")
                yield Record(shown, i, row)


def _check_hub_reachable(timeout_s: float = 3.0) -> None:
    """Fail fast when the hub cannot be reached, instead of after a minute of retries.
    In offline mode ``datasets`` reads its local cache, so there is nothing to check."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        return
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urllib.parse.urlparse(endpoint)
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (443 if parsed.scheme != "http" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as exc:
        raise ConnectionError(f"cannot connect to {host}:{port} ({exc})") from exc


def _hub_records(hub: HubSource) -> list[Record]:
    _check_hub_reachable()
    import datasets  # heavy import; only when the hub is actually used

    ds = datasets.load_dataset(hub.dataset, hub.config, split=hub.split)
    shown = f"hub:{hub.dataset}" + (f"/{hub.config}" if hub.config else "") + f"[{hub.split}]"
    return [Record(shown, i + 1, row) for i, row in enumerate(ds)]


def _not_available(source: DataSource, hub_error: BaseException | None) -> DataNotAvailableError:
    where = f"{DATA_DIR_ENV}={os.environ.get(DATA_DIR_ENV, '<unset>')}"
    hub = source.hub
    hub_text = (
        f"the hub dataset {hub.dataset!r}"
        + (f" (config {hub.config!r})" if hub.config else "")
        + f" could not be loaded ({type(hub_error).__name__}: {str(hub_error)[:200]})"
        if hub is not None
        else "this benchmark has no hub dataset"
    )
    return DataNotAvailableError(
        f"no data for {source.folder!r}: no local file {source.folder}/{source.filename} "
        f"({where}) and {hub_text}. Fix: point {DATA_DIR_ENV} at a folder laid out like "
        f"shared/data (holding {source.folder}/{source.filename}), or pass path=..., "
        "or give this machine access to the Hugging Face hub."
    )


def load_records(source: DataSource, path: str | os.PathLike[str] | None = None) -> list[Record]:
    """All records of ``source``: local first (``path``, then ``$BRITE_DATA_DIR``), then the hub."""
    local = locate(source, path)
    if local is not None:
        return list(read_file(local, source))
    hub_error: BaseException | None = None
    if source.hub is not None:
        try:
            return _hub_records(source.hub)
        except Exception as exc:  # any failure to reach or read the hub: report both options
            hub_error = exc
    raise _not_available(source, hub_error) from hub_error


def describe_source(source: DataSource, path: str | os.PathLike[str] | None = None) -> str:
    """Where the data would come from, without loading it: ``local:<file>``, ``hub:<id>`` or
    ``unavailable``. The hub is not contacted; it is reported as a candidate."""
    try:
        local = locate(source, path)
    except DataNotAvailableError:
        return "unavailable"
    if local is not None:
        return f"local:{local}"
    if source.hub is not None:
        return f"hub:{source.hub.dataset}"
    return "unavailable"
