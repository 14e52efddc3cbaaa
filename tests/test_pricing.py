"""The price table, the cost figures drawn from it, and the script that regenerates it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.core import refresh_prices
from bot.core.pricing import (
    BUNDLED,
    Costs,
    Disk,
    Image,
    PriceTableError,
    bundled_prices,
    costs,
    describe_costs,
    disks_per_month,
    format_per_day,
    format_per_month,
    format_usd,
    load_prices,
    parked_per_month,
    region_of,
    running_per_day,
    savings,
)

FIXTURE = Path(__file__).parent / "fixtures" / "billing_skus.json"
GIB = 2**30
RAW = json.loads(BUNDLED.read_text())


def test_the_bundled_table_says_what_it_is_and_where_it_came_from() -> None:
    table = bundled_prices()
    assert table.label == "list price, before discounts"
    assert table.currency == "USD" and table.as_of == RAW["as_of"]
    assert "https://cloud.google.com/compute/vm-instance-pricing" in table.sources
    assert "https://cloud.google.com/compute/disks-image-pricing" in table.sources
    for region in ("us-central1", "us-east1", "us-west1", "europe-west1", "europe-west4", "asia-east1"):
        for family in ("e2-standard-2", "e2-micro", "e2-small", "e2-medium", "e2-highmem-4", "e2-highcpu-8",
                       "n1-standard-1", "n1-highmem-2", "n1-highcpu-4", "n2-standard-2", "n2-highmem-4",
                       "n2-highcpu-8", "n2d-standard-2", "n2d-highmem-2", "n2d-highcpu-2", "c2-standard-4",
                       "t2d-standard-1", "c3-standard-4", "c3-highmem-8", "c3-highcpu-22"):
            assert table.machine_per_hour(family, region) is not None, (family, region)
        for disk in ("pd-standard", "pd-balanced", "pd-ssd", "pd-extreme"):
            assert table.disk_per_gb_month(disk, region) is not None, (disk, region)


@pytest.mark.parametrize(
    ("machine_type", "zone", "per_hour"),
    [  # Google's published us-central1 list prices, and the same rates in us-east1 and us-west1
        ("e2-micro", "us-central1-a", 0.008376),
        ("e2-medium", "us-central1-f", 0.033503),
        ("e2-standard-2", "us-east1-b", 0.067006),
        ("n1-standard-1", "us-west1-a", 0.0475),
        ("n2-standard-2", "us-central1-c", 0.097118),
        ("n2d-standard-2", "us-central1-a", 0.084492),
        ("c2-standard-4", "us-central1-a", 0.208808),
        ("t2d-standard-1", "us-central1-a", 0.042246),
        ("c3-standard-4", "us-central1-a", 0.201608),
    ],
)
def test_machine_prices_match_the_published_list(machine_type: str, zone: str, per_hour: float) -> None:
    assert bundled_prices().machine_per_hour(machine_type, zone) == per_hour


def test_every_machine_price_is_its_vcpus_and_memory_at_its_regions_rates() -> None:
    regenerated = refresh_prices.build_table(
        RAW["rates_per_hour"], RAW["disks_per_gb_month"], RAW["image_storage_per_gb_month"], as_of="x", sources=[]
    )
    assert regenerated["machine_types_per_hour"] == RAW["machine_types_per_hour"]
    rates = RAW["rates_per_hour"]["europe-west4"]["n2"]
    expected = round(4 * rates["core"] + 32 * rates["ram"], 6)
    assert RAW["machine_types_per_hour"]["europe-west4"]["n2-highmem-4"] == expected


def test_running_cost_per_day_is_machine_plus_disks() -> None:
    table = bundled_prices()
    per_day = running_per_day(table, "e2-medium", "us-central1-a", [Disk("pd-balanced", 10)])
    assert per_day == pytest.approx(24 * (0.033503 + 10 * 0.10 / 730))
    assert format_per_day(per_day) == "$0.84/day"
    # Europe: read the figures from the table, with the disk type as GCP writes it (a URL).
    machine = RAW["machine_types_per_hour"]["europe-west4"]["n2-standard-4"]
    ssd = RAW["disks_per_gb_month"]["europe-west4"]["pd-ssd"]
    disk = Disk("https://www.googleapis.com/compute/v1/projects/p/zones/europe-west4-a/diskTypes/pd-ssd", 50)
    assert running_per_day(table, "zones/europe-west4-a/machineTypes/n2-standard-4", "europe-west4-a", [disk]) == (
        pytest.approx(24 * (machine + 50 * ssd / 730))
    )
    assert disks_per_month(table, "asia-east1-b", [Disk("pd-standard", 100), Disk("pd-extreme", 10)]) == pytest.approx(
        100 * RAW["disks_per_gb_month"]["asia-east1"]["pd-standard"]
        + 10 * RAW["disks_per_gb_month"]["asia-east1"]["pd-extreme"]
    )


@pytest.mark.parametrize(
    ("machine_type", "zone", "disk_type"),
    [
        ("e2-custom-4-8192", "us-central1-a", "pd-balanced"),  # custom types are not in the table
        ("m3-ultramem-32", "us-central1-a", "pd-balanced"),
        ("e2-standard-2", "mars-central1-a", "pd-balanced"),
        ("e2-standard-2", "us-central1-a", "hyperdisk-balanced"),
    ],
)
def test_what_the_table_does_not_know_is_price_unknown(machine_type: str, zone: str, disk_type: str) -> None:
    figures = costs(bundled_prices(), machine_type, zone, [Disk(disk_type, 10)], [Image(10)])
    assert figures.running_per_day is None
    assert format_per_day(figures.running_per_day) == "price unknown"
    assert describe_costs(figures) == "running: price unknown · ~$0.50/month parked"
    assert savings(bundled_prices(), machine_type, zone, [Disk(disk_type, 10)], [Image(10)], parked_hours=10) is None


def test_parked_cost_is_the_images_archive_size_else_the_disk_size() -> None:
    table = bundled_prices()
    assert table.image_storage == 0.05
    assert parked_per_month(table, [Image(10, archive_size_bytes=3 * GIB)]) == pytest.approx(0.15)
    assert parked_per_month(table, [Image(10)]) == pytest.approx(0.50)
    assert parked_per_month(table, [Image(10), Image(200, archive_size_bytes=20 * GIB)]) == pytest.approx(1.50)
    assert format_per_month(parked_per_month(table, [Image(10)])) == "$0.50/month"


def test_the_confirm_card_line() -> None:
    figures = costs(bundled_prices(), "e2-medium", "us-central1-a", [Disk("pd-balanced", 10)], [Image(10)])
    assert figures == Costs(pytest.approx(0.8369479), pytest.approx(1.0), pytest.approx(0.5))
    assert describe_costs(figures) == "~$0.84/day running · ~$0.50/month parked"


def test_savings_count_parked_hours_net_of_images_and_stopped_hours_for_the_machine_only() -> None:
    table = bundled_prices()
    disks, images = [Disk("pd-balanced", 20)], [Image(20, archive_size_bytes=2 * GIB)]
    machine, disk_hour, image_hour = 0.067006, 20 * 0.10 / 730, 2 * 0.05 / 730
    assert savings(table, "e2-standard-2", "us-central1-a", disks, images, parked_hours=100, stopped_hours=10) == (
        pytest.approx(100 * (machine + disk_hour - image_hour) + 10 * machine)
    )
    assert savings(table, "e2-standard-2", "us-central1-a", disks, images, parked_hours=0) == 0


@pytest.mark.parametrize(
    ("amount", "text"), [(0.4, "$0.40"), (0.0, "$0.00"), (0.004, "under $0.01"), (0.005, "$0.01"), (1234.5, "$1,234.50")]
)
def test_dollars(amount: float, text: str) -> None:
    assert format_usd(amount) == text


def test_regions_from_zones() -> None:
    assert region_of("us-central1-a") == "us-central1"
    assert region_of("northamerica-northeast1-b") == "northamerica-northeast1"
    assert region_of("europe-west4") == "europe-west4"
    assert region_of("projects/p/zones/asia-east1-c") == "asia-east1"


# --- operator override ----------------------------------------------------------------------------


def test_an_operators_file_replaces_the_table_whole(tmp_path: Path) -> None:
    own = {
        "label": "our contract price",
        "as_of": "2026-01-01",
        "machine_types_per_hour": {"us-central1": {"e2-standard-2": 0.05}},
        "disks_per_gb_month": {"us-central1": {"pd-balanced": 0.08}},
        "image_storage_per_gb_month": 0.04,
    }
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(own))
    table = load_prices(str(path))
    assert table.label == "our contract price" and table.hours_per_month == 730
    assert running_per_day(table, "e2-standard-2", "us-central1-a", [Disk("pd-balanced", 10)]) == pytest.approx(
        24 * (0.05 + 0.8 / 730)
    )
    assert table.machine_per_hour("e2-micro", "us-central1-a") is None  # not mixed with the bundled list prices


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, "cannot read price file"),
        ("{not json", "is not JSON"),
        ('{"label": "x", "as_of": "y"}', "not in prices.json's format"),
        (
            '{"label": "x", "as_of": "y", "machine_types_per_hour": {"us-central1": {"e2-micro": -1}},'
            ' "disks_per_gb_month": {}, "image_storage_per_gb_month": 0.05}',
            "e2-micro must be a number of dollars, not -1",
        ),
        (
            '{"label": "x", "as_of": "y", "machine_types_per_hour": {}, "disks_per_gb_month": {},'
            ' "image_storage_per_gb_month": "0.05"}',
            "must be a number of dollars, not '0.05'",
        ),
        ('{"label": "x", "as_of": "y", "machine_types_per_hour": [], "disks_per_gb_month": {}}', "must map regions"),
    ],
)
def test_a_bad_price_file_is_refused_saying_why(tmp_path: Path, content: str | None, words: str) -> None:
    path = tmp_path / "prices.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(PriceTableError) as error:
        load_prices(path)
    assert str(path) in str(error.value) and words in str(error.value)


# --- regenerating the table from the Cloud Billing Catalog ----------------------------------------


def test_refresh_reads_on_demand_skus_into_the_table(tmp_path: Path) -> None:
    output = tmp_path / "prices.json"
    assert refresh_prices.main([str(FIXTURE), "--output", str(output)]) == 0
    table = load_prices(output)
    document = json.loads(output.read_text())
    assert table.label == "list price, before discounts" and table.as_of == "2025-11-20"
    assert any("6F81-5844-456A/skus" in source for source in table.sources)
    # E2 in us-central1 at the fixture's rates; the spot and commitment SKUs are ignored.
    assert document["rates_per_hour"]["us-central1"]["e2"] == {"core": 0.0221, "ram": 0.003}
    assert table.machine_per_hour("e2-standard-2", "us-central1-a") == round(2 * 0.0221 + 8 * 0.003, 6)
    assert table.machine_per_hour("e2-micro", "us-central1-a") == round(0.25 * 0.0221 + 1 * 0.003, 6)
    assert table.machine_per_hour("e2-highcpu-4", "europe-west1-b") == round(4 * 0.0243 + 4 * 0.0033, 6)
    assert table.machine_per_hour("n1-standard-4", "us-central1-a") == round(4 * 0.0316 + 15 * 0.0042, 6)
    # T2D has a core SKU but no RAM SKU in the dump: its types stay unknown rather than half-priced.
    assert table.machine_per_hour("t2d-standard-1", "us-central1-a") is None
    # Disks by region; the regional SSD SKU is not pd-ssd; the image's free tier is skipped.
    assert table.disk_per_gb_month("pd-ssd", "us-central1-a") == 0.18
    assert table.disk_per_gb_month("pd-standard", "us-central1-a") == 0.041
    assert table.disk_per_gb_month("pd-balanced", "europe-west1-c") == 0.11
    assert table.image_storage == 0.052
    # Mumbai is not among the default regions.
    assert "asia-south1" not in document["machine_types_per_hour"]


def test_refresh_keeps_the_regions_asked_for_and_reads_a_list_of_pages(tmp_path: Path) -> None:
    pages = tmp_path / "pages.json"
    skus = json.loads(FIXTURE.read_text())["skus"]
    pages.write_text(json.dumps([{"skus": skus[:8], "nextPageToken": "t"}, {"skus": skus[8:]}]))
    output = tmp_path / "prices.json"
    refresh_prices.main([str(pages), "--output", str(output), "--regions", "asia-south1", "--as-of", "2026-02-01"])
    table = load_prices(output)
    assert set(table.machine_types) == {"asia-south1"} and table.as_of == "2026-02-01"
    assert table.machine_per_hour("e2-medium", "asia-south1-a") == round(0.0229 + 4 * 0.0031, 6)


def test_refresh_refuses_a_dump_that_is_not_compute_engines(tmp_path: Path) -> None:
    skus = [sku for sku in json.loads(FIXTURE.read_text())["skus"] if sku["description"] != "Storage Image"]
    dump = tmp_path / "skus.json"
    dump.write_text(json.dumps({"skus": skus}))
    with pytest.raises(ValueError, match="6F81-5844-456A"):
        refresh_prices.main([str(dump), "--output", str(tmp_path / "out.json")])
