"""Regenerates bot/core/prices.json from a Cloud Billing Catalog API dump of Compute Engine's SKUs.

Fetch the dump (Compute Engine is service 6F81-5844-456A; the catalog needs an API key or a
token, no billing permission; it answers at most 5000 SKUs a page, so merge the pages)::

    url=https://cloudbilling.googleapis.com/v1/services/6F81-5844-456A/skus
    token=""; : > pages.jsonl
    while :; do
      curl -s -H "Authorization: Bearer $(gcloud auth print-access-token)" \\
        "$url?currencyCode=USD&pageSize=5000&pageToken=$token" | tee -a pages.jsonl > page.json
      token=$(jq -r '.nextPageToken // ""' page.json); [ -z "$token" ] && break
    done
    jq -s '{skus: map(.skus[])}' pages.jsonl > skus.json
    python -m bot.core.refresh_prices skus.json            # writes bot/core/prices.json

(``?key=API_KEY`` works in place of the Authorization header.)

A machine type's price is its vCPUs times the family's core rate plus its memory times the
family's RAM rate, which is how Google bills predefined types; SHAPES lists the types the
table covers. Only on-demand SKUs are read (no spot, commitments or sole tenancy), so every
figure is a list price, before discounts.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Mapping
from datetime import date
from pathlib import Path
from typing import Any

CATALOG_URL = "https://cloudbilling.googleapis.com/v1/services/6F81-5844-456A/skus"
LIST_PRICE = "list price, before discounts"
PAGES = ("https://cloud.google.com/compute/vm-instance-pricing", "https://cloud.google.com/compute/disks-image-pricing")
DEFAULT_REGIONS = ("us-central1", "us-east1", "us-west1", "europe-west1", "europe-west4", "asia-east1")
HOURS_PER_MONTH = 730  # Google's own convention for monthly figures

# family -> class -> (GB of memory per vCPU, vCPU counts). Shared-core E2 types are in SHARED_CORE.
SHAPES: dict[str, dict[str, tuple[float, tuple[int, ...]]]] = {
    "e2": {"standard": (4, (2, 4, 8, 16, 32)), "highmem": (8, (2, 4, 8, 16)), "highcpu": (1, (2, 4, 8, 16, 32))},
    "n1": {
        "standard": (3.75, (1, 2, 4, 8, 16, 32, 64, 96)),
        "highmem": (6.5, (2, 4, 8, 16, 32, 64, 96)),
        "highcpu": (0.9, (2, 4, 8, 16, 32, 64, 96)),
    },
    "n2": {
        "standard": (4, (2, 4, 8, 16, 32, 48, 64, 80, 96, 128)),
        "highmem": (8, (2, 4, 8, 16, 32, 48, 64, 80, 96, 128)),
        "highcpu": (1, (2, 4, 8, 16, 32, 48, 64, 80, 96)),
    },
    "n2d": {
        "standard": (4, (2, 4, 8, 16, 32, 48, 64, 80, 96, 128, 224)),
        "highmem": (8, (2, 4, 8, 16, 32, 48, 64, 80, 96)),
        "highcpu": (1, (2, 4, 8, 16, 32, 48, 64, 80, 96, 128, 224)),
    },
    "c2": {"standard": (4, (4, 8, 16, 30, 60))},
    "t2d": {"standard": (4, (1, 2, 4, 8, 16, 32, 48, 60))},
    "c3": {
        "standard": (4, (4, 8, 22, 44, 88, 176)),
        "highmem": (8, (4, 8, 22, 44, 88, 176)),
        "highcpu": (2, (4, 8, 22, 44, 88, 176)),
    },
}
# E2 shared-core types are billed as a fraction of a vCPU at the E2 core rate.
SHARED_CORE: dict[str, tuple[str, float, float]] = {
    "e2-micro": ("e2", 0.25, 1),
    "e2-small": ("e2", 0.5, 2),
    "e2-medium": ("e2", 1, 4),
}

_IN = r"running in .+$"
MACHINE_SKUS: dict[tuple[str, str], re.Pattern[str]] = {
    ("e2", "core"): re.compile(r"^E2 Instance Core " + _IN),
    ("e2", "ram"): re.compile(r"^E2 Instance Ram " + _IN),
    ("n1", "core"): re.compile(r"^N1 Predefined Instance Core " + _IN),
    ("n1", "ram"): re.compile(r"^N1 Predefined Instance Ram " + _IN),
    ("n2", "core"): re.compile(r"^N2 Instance Core " + _IN),
    ("n2", "ram"): re.compile(r"^N2 Instance Ram " + _IN),
    ("n2d", "core"): re.compile(r"^N2D AMD Instance Core " + _IN),
    ("n2d", "ram"): re.compile(r"^N2D AMD Instance Ram " + _IN),
    ("c2", "core"): re.compile(r"^Compute optimized Core " + _IN),
    ("c2", "ram"): re.compile(r"^Compute optimized Ram " + _IN),
    ("t2d", "core"): re.compile(r"^T2D AMD Instance Core " + _IN),
    ("t2d", "ram"): re.compile(r"^T2D AMD Instance Ram " + _IN),
    ("c3", "core"): re.compile(r"^C3 Instance Core " + _IN),
    ("c3", "ram"): re.compile(r"^C3 Instance Ram " + _IN),
}
DISK_SKUS: dict[str, re.Pattern[str]] = {
    "pd-standard": re.compile(r"^Storage PD Capacity( in .+)?$"),
    "pd-balanced": re.compile(r"^Balanced PD Capacity( in .+)?$"),
    "pd-ssd": re.compile(r"^SSD backed PD Capacity( in .+)?$"),
    "pd-extreme": re.compile(r"^Extreme PD Capacity( in .+)?$"),
}
IMAGE_SKU = re.compile(r"^Storage Image$")
UNITS = {"core": "h", "ram": "GiBy.h", "disk": "GiBy.mo"}


def machine_prices(rates: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """$/hour per machine type from one region's ``{family: {"core": $/vCPU-h, "ram": $/GB-h}}``."""
    prices: dict[str, float] = {}
    for family, classes in SHAPES.items():
        if family not in rates:
            continue
        core, ram = rates[family]["core"], rates[family]["ram"]
        for kind, (gb_per_cpu, sizes) in classes.items():
            for cpus in sizes:
                prices[f"{family}-{kind}-{cpus}"] = round(cpus * core + cpus * gb_per_cpu * ram, 6)
    for name, (family, cpus, gb) in SHARED_CORE.items():
        if family in rates:
            prices[name] = round(cpus * rates[family]["core"] + gb * rates[family]["ram"], 6)
    return dict(sorted(prices.items()))


def build_table(
    rates: Mapping[str, Mapping[str, Mapping[str, float]]],
    disks: Mapping[str, Mapping[str, float]],
    image_storage: float,
    *,
    as_of: str,
    sources: Iterable[str],
    notes: str = "",
) -> dict[str, Any]:
    """The prices.json document: machine types per region, the rates they came from, disks, images."""
    return {
        "label": LIST_PRICE,
        "currency": "USD",
        "as_of": as_of,
        "sources": list(sources),
        "notes": notes,
        "hours_per_month": HOURS_PER_MONTH,
        "image_storage_per_gb_month": image_storage,
        "disks_per_gb_month": {region: dict(sorted(d.items())) for region, d in sorted(disks.items())},
        "machine_types_per_hour": {region: machine_prices(r) for region, r in sorted(rates.items())},
        "rates_per_hour": {region: {f: dict(c) for f, c in sorted(r.items())} for region, r in sorted(rates.items())},
    }


def unit_price(sku: Mapping[str, Any]) -> tuple[str, float] | None:
    """(usage unit, $ per unit) of a SKU's current price: the first paid tier, past any free tier."""
    infos = sorted(sku.get("pricingInfo", []), key=lambda info: info.get("effectiveTime", ""))
    if not infos:
        return None
    expression = infos[-1]["pricingExpression"]
    for tier in expression.get("tieredRates", []):
        money = tier["unitPrice"]
        price = int(money.get("units", 0) or 0) + int(money.get("nanos", 0) or 0) / 1e9
        if price > 0:
            return expression["usageUnit"], price
    return None


def from_skus(skus: Iterable[Mapping[str, Any]], regions: Iterable[str], *, as_of: str | None = None) -> dict[str, Any]:
    """Reads the on-demand core, RAM, disk and image SKUs for ``regions`` into a prices.json document."""
    wanted = set(regions)
    rates: dict[str, dict[str, dict[str, float]]] = {}
    disks: dict[str, dict[str, float]] = {}
    image: float | None = None
    newest = ""
    for sku in skus:
        if sku.get("category", {}).get("usageType") != "OnDemand":
            continue
        description, priced = sku.get("description", ""), unit_price(sku)
        if priced is None:
            continue
        unit, price = priced
        newest = max([newest, *(info.get("effectiveTime", "") for info in sku.get("pricingInfo", []))])
        in_regions = wanted & set(sku.get("serviceRegions", []))
        for (family, part), pattern in MACHINE_SKUS.items():
            if pattern.match(description) and unit == UNITS[part]:
                for region in in_regions:
                    rates.setdefault(region, {}).setdefault(family, {})[part] = price
        for disk, pattern in DISK_SKUS.items():
            if pattern.match(description) and unit == UNITS["disk"]:
                for region in in_regions:
                    disks.setdefault(region, {})[disk] = price
        if IMAGE_SKU.match(description) and unit == UNITS["disk"]:
            image = price
    if image is None:
        raise ValueError(
            "the dump has no 'Storage Image' SKU priced in GiBy.mo; is it Compute Engine's (6F81-5844-456A)?"
        )
    complete = {
        region: {family: parts for family, parts in families.items() if set(parts) == {"core", "ram"}}
        for region, families in rates.items()
    }
    return build_table(
        complete,
        disks,
        image,
        as_of=as_of or (newest[:10] if newest else date.today().isoformat()),
        sources=[f"Cloud Billing Catalog API: {CATALOG_URL}", *PAGES],
        notes="On-demand SKUs only; regenerated by python -m bot.core.refresh_prices.",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.core.refresh_prices", description=__doc__.split("\n")[0])
    parser.add_argument("input", type=Path, help="SKU dump: {'skus': [...]} or a list of such pages")
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("prices.json"))
    parser.add_argument("--regions", default=",".join(DEFAULT_REGIONS), help="comma-separated regions to keep")
    parser.add_argument("--as-of", help="date to write (default: the newest price's effectiveTime)")
    args = parser.parse_args(argv)
    dump = json.loads(args.input.read_text())
    pages = dump if isinstance(dump, list) else [dump]
    skus = [sku for page in pages for sku in page.get("skus", [])]
    regions = [region.strip() for region in args.regions.split(",") if region.strip()]
    table = from_skus(skus, regions, as_of=args.as_of)
    missing = [region for region in regions if not table["machine_types_per_hour"].get(region)]
    args.output.write_text(json.dumps(table, indent=1) + "\n")
    count = sum(len(types) for types in table["machine_types_per_hour"].values())
    print(f"wrote {args.output}: {count} machine-type prices as of {table['as_of']}", file=sys.stderr)
    if missing:
        print(f"no machine prices found for: {', '.join(missing)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
