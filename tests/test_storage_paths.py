"""Every partition key gets its own file under ``base_dir``, whatever characters it holds."""

import random
import urllib.parse
from collections.abc import Mapping
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from llm_assets.resources.storage import ParquetIOManager
from llm_assets.resources.storage.names import escape_path_component

# Keys that a replace-based cleaner maps onto each other or out of base_dir.
KEYS = [
    "us/east",
    "us_east",
    "us%2Feast",
    "us east",
    "..",
    ".",
    ".hidden",
    "../../escape",
    "/etc/passwd",
    "café",
    "2026-11-02",
    "x" * 300,
    "x" * 299 + "y",
]
DYNAMIC_NAME = "odd_keys"
DYNAMIC = dg.DynamicPartitionsDefinition(name=DYNAMIC_NAME)


def _files(base: Path) -> list[Path]:
    return sorted(p for p in base.rglob("*") if p.is_file())


def _assert_one_file_per_key_inside(base: Path, expected: int) -> None:
    files = _files(base)
    assert len(files) == expected, [p.relative_to(base).as_posix() for p in files]
    root = base.resolve()
    for path in files:
        assert path.resolve().is_relative_to(root)
        assert all(len(part.encode()) <= 255 for part in path.relative_to(base).parts)
        assert not path.name.endswith(".tmp")


def _load(
    io_manager: ParquetIOManager,
    asset: str,
    partitions: dg.PartitionsDefinition,
    key: str,
    instance: dg.DagsterInstance,
) -> pd.DataFrame:
    context = dg.build_input_context(
        asset_key=dg.AssetKey(asset),
        partition_key=key,
        asset_partitions_def=partitions,
        instance=instance,
    )
    return io_manager.load_input(context)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_static_keys_each_materialized_then_each_loads_its_own_rows(
    tmp_path: Path, sqlite_instance: dg.DagsterInstance
) -> None:
    partitions = dg.StaticPartitionsDefinition(KEYS)

    @dg.asset(partitions_def=partitions)
    def regions(context: dg.AssetExecutionContext) -> pd.DataFrame:
        key = context.partition_key
        return pd.DataFrame({"key": [key, key], "n": [KEYS.index(key), -1]})

    @dg.asset(partitions_def=partitions)
    def region_copy(context: dg.AssetExecutionContext, regions: pd.DataFrame) -> pd.DataFrame:
        assert regions["key"].eq(context.partition_key).all()
        return regions

    base = tmp_path / "data"
    io_manager = ParquetIOManager(base_dir=str(base))
    for key in KEYS:
        result = dg.materialize(
            [regions, region_copy],
            partition_key=key,
            resources={"io_manager": io_manager},
            instance=sqlite_instance,
        )
        assert result.success

    _assert_one_file_per_key_inside(base, 2 * len(KEYS))
    for asset in ("regions", "region_copy"):
        for key in KEYS:
            table = _load(io_manager, asset, partitions, key, sqlite_instance)
            assert table["key"].tolist() == [key, key]
            assert table["n"].tolist() == [KEYS.index(key), -1]
    assert (base / "regions" / "2026-11-02.parquet").is_file()  # safe keys keep their name


def backfill_uploads(
    io_manager: dg.ConfigurableIOManager,
    instance: dg.DagsterInstance,
    partitions: dg.DynamicPartitionsDefinition,
    keys: list[str],
) -> dg.ExecuteInProcessResult:
    """Adds ``keys`` to ``partitions`` and materializes all of them in one single-run backfill.

    Two assets take part: ``uploads`` (one row per key) and ``upload_sizes``, which reads every
    partition of ``uploads`` at once, checks it got exactly ``keys`` back, and adds ``size``.

    Args:
        io_manager: The IO manager both assets use.
        instance: The Dagster instance to run on.
        partitions: The dynamic partitions the two assets are partitioned by.
        keys: The partition keys, first and last naming the backfill's range.

    Returns:
        The run's result, already checked to be a success.
    """

    @dg.asset(partitions_def=partitions, backfill_policy=dg.BackfillPolicy.single_run())
    def uploads(context: dg.AssetExecutionContext) -> dict[str, pd.DataFrame]:
        return {key: pd.DataFrame({"key": [key]}) for key in context.partition_keys}

    @dg.asset(partitions_def=partitions, backfill_policy=dg.BackfillPolicy.single_run())
    def upload_sizes(
        context: dg.AssetExecutionContext, uploads: Mapping[str, pd.DataFrame]
    ) -> dict[str, pd.DataFrame]:
        assert set(uploads) == set(context.partition_keys) == set(keys)
        for key, table in uploads.items():
            assert table["key"].tolist() == [key]
        return {key: table.assign(size=len(key)) for key, table in uploads.items()}

    instance.add_dynamic_partitions(partitions.name or "", keys)
    result = dg.materialize(
        [uploads, upload_sizes],
        resources={"io_manager": io_manager},
        instance=instance,
        tags={ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]},
    )
    assert result.success
    return result


@pytest.mark.timeout(300)
def test_single_run_backfill_of_dynamic_keys_writes_and_reads_one_file_each(
    tmp_path: Path, sqlite_instance: dg.DagsterInstance
) -> None:
    base = tmp_path / "data"
    io_manager = ParquetIOManager(base_dir=str(base))
    backfill_uploads(io_manager, sqlite_instance, DYNAMIC, KEYS)
    assert len(sqlite_instance.get_runs()) == 1

    _assert_one_file_per_key_inside(base, 2 * len(KEYS))
    for key in KEYS:
        table = _load(io_manager, "upload_sizes", DYNAMIC, key, sqlite_instance)
        assert table["key"].tolist() == [key] and table["size"].tolist() == [len(key)]


@pytest.mark.timeout(300)
def test_multi_partition_values_are_escaped_per_dimension(
    tmp_path: Path, sqlite_instance: dg.DagsterInstance
) -> None:
    partitions = dg.MultiPartitionsDefinition(
        {
            "region": dg.StaticPartitionsDefinition(["us/east", "us_east", ".."]),
            "tier": dg.StaticPartitionsDefinition(["a=b", "café"]),
        }
    )
    keys = partitions.get_partition_keys()

    @dg.asset(partitions_def=partitions)
    def quotas(context: dg.AssetExecutionContext) -> pd.DataFrame:
        return pd.DataFrame({"key": [str(context.partition_key)]})

    base = tmp_path / "data"
    io_manager = ParquetIOManager(base_dir=str(base))
    for key in keys:
        result = dg.materialize(
            [quotas],
            partition_key=key,
            resources={"io_manager": io_manager},
            instance=sqlite_instance,
        )
        assert result.success

    _assert_one_file_per_key_inside(base, len(keys))
    for key in keys:
        assert _load(io_manager, "quotas", partitions, key, sqlite_instance)["key"].tolist() == [
            str(key)
        ]
    key = dg.MultiPartitionKey({"region": "..", "tier": "a=b"})
    path = io_manager.path_for(dg.AssetKey("quotas"), key)
    assert path.relative_to(base).parts[1:] == ("region=%2E.", "tier=a%3Db", "data.parquet")


def test_safe_keys_keep_todays_file_names() -> None:
    io_manager = ParquetIOManager(base_dir="d")
    for key in ["2026-11-02", "eu", "p1", "v1.2_beta-3"]:
        path = io_manager.path_for(dg.AssetKey(["group", "asset"]), key)
        assert path.as_posix() == f"d/group/asset/{key}.parquet"
    assert io_manager.path_for(dg.AssetKey("asset"), None).as_posix() == "d/asset.parquet"


def _random_keys(rng: random.Random, count: int) -> list[str]:
    alphabet = "aZ09._-/%~= é€\\:\x01"
    keys = ["", ".", "..", "...", "%", "%empty", "%2E", "~", "a" * 200, "a" * 201, "é" * 100]
    keys += ["a" * 136 + tail for tail in ("", "%", "é", "b" * 70)]
    for _ in range(count):
        length = rng.choice([rng.randint(0, 6), rng.randint(60, 260)])
        keys.append("".join(rng.choice(alphabet) for _ in range(length)))
    return list(dict.fromkeys(keys))


def test_escape_is_injective_short_and_never_a_path_trick() -> None:
    keys = _random_keys(random.Random(20261102), 20_000)
    names = {key: escape_path_component(key) for key in keys}
    assert len(set(names.values())) == len(keys)
    for key, name in names.items():
        assert "/" not in name and "\\" not in name and "\x00" not in name
        assert name not in (".", "..") and not name.startswith(".")
        assert name.isascii() and 0 < len(name) <= 200
        if "~" not in name and name != "%empty":
            assert urllib.parse.unquote(name, errors="strict") == key


def test_long_names_keep_a_readable_prefix() -> None:
    name = escape_path_component("région/" * 50)
    assert name.startswith("r%C3%A9gion%2F") and len(name) <= 200
    assert name != escape_path_component("région/" * 51)
    with pytest.raises(ValueError, match="at least 80"):
        escape_path_component("x", max_bytes=10)
