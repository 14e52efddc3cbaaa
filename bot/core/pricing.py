"""What a VM costs running, parked and stopped, and what parking saved, from a dated price table.

The bundled table (prices.json, next to this module) holds Google's public list prices,
before discounts; ``refresh_prices`` regenerates it. An operator may point VMBOT_PRICES at a
file of the same format (e.g. with contract prices and their own ``label``): it replaces the
bundled table whole, so list and contract prices are never mixed under one label.

A machine type, region or disk type that is not in the table gives None ("price unknown"),
never a guess. Figures are plain numbers and plain text; renderers add the label and markup.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

BUNDLED = Path(__file__).with_name("prices.json")
GIB = 2**30


class PriceTableError(ValueError):
    """A price file that cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class PriceTable:
    label: str
    currency: str
    as_of: str
    sources: tuple[str, ...]
    machine_types: Mapping[str, Mapping[str, float]]  # region -> machine type -> $/hour
    disks: Mapping[str, Mapping[str, float]]  # region -> disk type -> $/GB-month
    image_storage: float  # $/GB-month
    hours_per_month: float = 730

    def machine_per_hour(self, machine_type: str, zone: str) -> float | None:
        return self.machine_types.get(region_of(zone), {}).get(_last_segment(machine_type))

    def disk_per_gb_month(self, disk_type: str, zone: str) -> float | None:
        return self.disks.get(region_of(zone), {}).get(_last_segment(disk_type))


@dataclass(frozen=True)
class Disk:
    """A persistent disk as GCP describes it: ``type`` may be a short name or a diskTypes URL."""

    type: str
    size_gb: float


@dataclass(frozen=True)
class Image:
    """An image's stored size: GCP's ``archiveSizeBytes`` when known, else its disk's size."""

    disk_size_gb: float
    archive_size_bytes: int | None = None

    @property
    def stored_gb(self) -> float:
        return self.archive_size_bytes / GIB if self.archive_size_bytes else self.disk_size_gb


@dataclass(frozen=True)
class Costs:
    """One VM's figures, each None when the table cannot price it."""

    running_per_day: float | None
    stopped_per_month: float | None  # its disks only
    parked_per_month: float  # its images only


def region_of(zone: str) -> str:
    """``us-central1-a`` -> ``us-central1``; a region (or a zone URL) works too."""
    name = _last_segment(zone)
    parts = name.split("-")
    return "-".join(parts[:2]) if len(parts) == 3 else name


def _last_segment(name: str) -> str:
    return name.rstrip("/").rsplit("/", 1)[-1]


def load_prices(path: str | Path) -> PriceTable:
    """Reads a price file (prices.json's format). Raises PriceTableError saying what is wrong."""
    try:
        document = json.loads(Path(path).read_text())
        return _table(document)
    except OSError as error:
        raise PriceTableError(f"cannot read price file {path}: {error.strerror or error}") from error
    except json.JSONDecodeError as error:
        raise PriceTableError(f"price file {path} is not JSON: {error}") from error
    except (KeyError, TypeError, ValueError) as error:
        raise PriceTableError(f"price file {path} is not in prices.json's format: {error}") from error


@cache
def bundled_prices() -> PriceTable:
    return load_prices(BUNDLED)


def _table(document: Mapping[str, Any]) -> PriceTable:
    def rates(section: str) -> dict[str, dict[str, float]]:
        table = document[section]
        if not isinstance(table, dict):
            raise TypeError(f"'{section}' must map regions to prices")
        return {
            region: {name: _price(section, name, value) for name, value in items.items()}
            for region, items in table.items()
        }

    return PriceTable(
        label=str(document["label"]),
        currency=str(document.get("currency", "USD")),
        as_of=str(document["as_of"]),
        sources=tuple(document.get("sources", ())),
        machine_types=rates("machine_types_per_hour"),
        disks=rates("disks_per_gb_month"),
        image_storage=_price("image_storage_per_gb_month", "images", document["image_storage_per_gb_month"]),
        hours_per_month=_price("hours_per_month", "hours", document.get("hours_per_month", 730)),
    )


def _price(section: str, name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{section}: {name} must be a number of dollars, not {value!r}")
    return float(value)


def disks_per_month(table: PriceTable, zone: str, disks: Sequence[Disk]) -> float | None:
    """What the disks cost a month (paid while running or stopped); None if a type is unknown."""
    total = 0.0
    for disk in disks:
        rate = table.disk_per_gb_month(disk.type, zone)
        if rate is None:
            return None
        total += rate * disk.size_gb
    return total


def running_per_day(table: PriceTable, machine_type: str, zone: str, disks: Sequence[Disk]) -> float | None:
    """Machine plus disks for 24 hours; None ("price unknown") if either is not in the table."""
    machine = table.machine_per_hour(machine_type, zone)
    storage = disks_per_month(table, zone, disks)
    if machine is None or storage is None:
        return None
    return 24 * (machine + storage / table.hours_per_month)


def parked_per_month(table: PriceTable, images: Sequence[Image]) -> float:
    """What a parked VM costs: its images' storage (image storage is priced the same everywhere)."""
    return table.image_storage * sum(image.stored_gb for image in images)


def costs(table: PriceTable, machine_type: str, zone: str, disks: Sequence[Disk], images: Sequence[Image]) -> Costs:
    """The three figures a confirm card, ``/vm status`` and ``/vm list`` show. Before a first park,
    pass ``[Image(d.size_gb) for d in disks]`` as the images it would make."""
    return Costs(
        running_per_day=running_per_day(table, machine_type, zone, disks),
        stopped_per_month=disks_per_month(table, zone, disks),
        parked_per_month=parked_per_month(table, images),
    )


def savings(
    table: PriceTable,
    machine_type: str,
    zone: str,
    disks: Sequence[Disk],
    images: Sequence[Image],
    *,
    parked_hours: float,
    stopped_hours: float = 0.0,
) -> float | None:
    """Dollars not spent: parked hours save the machine and disks less the images' storage;
    stopped (or suspended) hours save the machine only. None if the machine or a disk is unpriced.

    Figures are at today's table for the VM's current shape, an estimate of the past."""
    machine = table.machine_per_hour(machine_type, zone)
    storage = disks_per_month(table, zone, disks)
    if machine is None or storage is None:
        return None
    images_per_hour = parked_per_month(table, images) / table.hours_per_month
    parked = (machine + storage / table.hours_per_month - images_per_hour) * parked_hours
    return parked + machine * stopped_hours


def format_usd(amount: float) -> str:
    """``$0.40``; amounts under a cent as ``under $0.01`` so a small figure never reads as free
    (in words: a ``<`` would be markup in Slack)."""
    if 0 < amount < 0.005:
        return "under $0.01"
    return f"${amount:,.2f}"


def format_per_day(amount: float | None) -> str:
    return "price unknown" if amount is None else f"{format_usd(amount)}/day"


def format_per_month(amount: float | None) -> str:
    return "price unknown" if amount is None else f"{format_usd(amount)}/month"


def describe_costs(figures: Costs) -> str:
    """``~$0.40/day running · ~$0.50/month parked`` (plain text; add the table's label beside it)."""
    running = figures.running_per_day
    running_text = "running: price unknown" if running is None else f"~{format_per_day(running)} running"
    return f"{running_text} · ~{format_per_month(figures.parked_per_month)} parked"
