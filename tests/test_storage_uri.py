"""Tables in object storage: the same IO manager on a real S3 API (moto) and on ``file://``."""

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from reviews_example.pipeline import ASSETS
from reviews_example.sample_reviews import generate_reviews

from llm_assets.resources.errors import UserError
from llm_assets.resources.storage import ParquetIOManager
from llm_assets.resources.storage.names import escape_path_component
from llm_assets.simulator import SimulatorServer
from llm_assets.trace import trace_row
from tests.conftest import NO_COMPUTE_LOGS, make_resources
from tests.s3_support import (
    S3_KEY_ID,
    S3_SECRET,
    MotoS3,
    S3Bucket,
    moto_s3,
    s3_bucket,
    s3_io_manager,
)
from tests.test_storage_paths import backfill_uploads

__all__ = ["moto_s3", "s3_bucket"]  # fixtures, used by name

DYNAMIC = dg.DynamicPartitionsDefinition(name="uri_keys")
# Keys that a careless store would merge, move or mangle (tests/test_storage_paths.py runs
# the longer list on a plain folder).
KEYS = ["us/east", "us%2Feast", "..", ".hidden", "café ~", "2026-11-02", "x" * 300]


@dataclass
class Store:
    """One storage backend under test: the IO manager and a view of what it holds."""

    io_manager: ParquetIOManager
    root_uri: str
    files: Callable[[], list[str]]
    raw: Callable[[str], bytes]


def _local_store(base: Path) -> Store:
    def files() -> list[str]:
        return sorted(p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file())

    return Store(
        ParquetIOManager(base_dir=f"file://{base}"),
        f"file://{base}",
        files,
        lambda relative: (base / relative).read_bytes(),
    )


def _s3_store(bucket: S3Bucket) -> Store:
    def files() -> list[str]:
        return [key.removeprefix("tables/") for key in bucket.object_keys()]

    return Store(
        bucket.io_manager("tables"),
        f"s3://{bucket.name}/tables",
        files,
        lambda relative: bucket.server.read(bucket.name, f"tables/{relative}"),
    )


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """The IO manager on ``file://<tmp>/tables`` or on ``s3://<fresh bucket>/tables``."""
    if request.param == "file":
        return _local_store(tmp_path / "tables")
    return _s3_store(request.getfixturevalue("s3_bucket"))


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dg.DagsterInstance]:
    """One SQLite instance for the module (runs are told apart by id): setup is slow."""
    home = str(tmp_path_factory.mktemp("dagster_home"))
    with dg.instance_for_test(temp_dir=home, overrides=NO_COMPUTE_LOGS) as shared:
        yield shared


def _uris(instance: dg.DagsterInstance, asset: str, run_id: str) -> dict[str | None, str]:
    """The ``uri`` metadata of each partition the run materialized."""
    records = instance.fetch_materializations(dg.AssetKey(asset), limit=1000).records
    uris: dict[str | None, str] = {}
    for record in records:
        materialization = record.asset_materialization
        if record.run_id == run_id and materialization is not None:
            assert materialization.partition not in uris
            uris[materialization.partition] = str(materialization.metadata["uri"].value)
    return uris


def _puts(bucket: S3Bucket) -> list[str]:
    return [r.path for r in bucket.server.requests_for(bucket.name) if r.method in ("PUT", "POST")]


SAMPLE = pd.DataFrame(
    {
        "id": [1, 2, 3],
        "text": ["a", None, "é/..%"],
        "score": [0.5, float("nan"), -1.25],
        "ok": [True, False, True],
        "topics": [["x", "y"], [], ["z"]],
        "at": pd.to_datetime(["2026-11-01", "2026-11-02", "2026-11-03"], utc=True),
    }
)


def test_round_trip_keeps_the_table_and_records_its_uri(
    store: Store, instance: dg.DagsterInstance
) -> None:
    @dg.asset
    def source() -> pd.DataFrame:
        return SAMPLE

    @dg.asset
    def copy(source: pd.DataFrame) -> pd.DataFrame:
        pd.testing.assert_frame_equal(source, SAMPLE)
        return source.assign(id=source["id"] * 10)

    result = dg.materialize(
        [source, copy], resources={"io_manager": store.io_manager}, instance=instance
    )
    assert result.success
    assert store.files() == ["copy.parquet", "source.parquet"]
    pd.testing.assert_frame_equal(store.io_manager.read_table(dg.AssetKey("source"), None), SAMPLE)
    copied = store.io_manager.read_table(dg.AssetKey("copy"), None)
    assert copied["id"].tolist() == [10, 20, 30]
    assert _uris(instance, "source", result.run_id) == {None: f"{store.root_uri}/source.parquet"}
    assert _uris(instance, "copy", result.run_id) == {None: f"{store.root_uri}/copy.parquet"}


@pytest.mark.timeout(300)
def test_single_run_backfill_writes_and_reads_one_file_per_partition(
    store: Store, instance: dg.DagsterInstance
) -> None:
    result = backfill_uploads(store.io_manager, instance, DYNAMIC, KEYS)

    names = {key: f"{escape_path_component(key)}.parquet" for key in KEYS}
    expected = sorted(
        f"{asset}/{name}" for asset in ("uploads", "upload_sizes") for name in names.values()
    )
    assert store.files() == expected
    for asset in ("uploads", "upload_sizes"):
        uris = _uris(instance, asset, result.run_id)
        assert uris == {key: f"{store.root_uri}/{asset}/{name}" for key, name in names.items()}
    for key in KEYS:
        table = store.io_manager.read_table(dg.AssetKey("upload_sizes"), key)
        assert table["key"].tolist() == [key] and table["size"].tolist() == [len(key)]


def test_each_object_is_one_put(s3_bucket: S3Bucket, instance: dg.DagsterInstance) -> None:
    partitions = dg.StaticPartitionsDefinition(["2026-11-01", "2026-11-02", "us/east"])

    @dg.asset(partitions_def=partitions, backfill_policy=dg.BackfillPolicy.single_run())
    def daily(context: dg.AssetExecutionContext) -> dict[str, pd.DataFrame]:
        return {key: SAMPLE.assign(key=key) for key in context.partition_keys}

    before = len(_puts(s3_bucket))
    result = dg.materialize(
        [daily],
        resources={"io_manager": s3_bucket.io_manager()},
        instance=instance,
        tags={
            ASSET_PARTITION_RANGE_START_TAG: "2026-11-01",
            ASSET_PARTITION_RANGE_END_TAG: "us/east",
        },
    )
    assert result.success
    prefix = f"/{s3_bucket.name}/tables/daily/"
    writes = _puts(s3_bucket)[before:]
    # One PutObject per file: no multipart upload, no temporary object, nothing else written.
    assert sorted(writes) == [
        f"{prefix}2026-11-01.parquet",
        f"{prefix}2026-11-02.parquet",
        f"{prefix}us%2Feast.parquet",
    ]
    assert not [r for r in s3_bucket.server.requests_for(s3_bucket.name) if "upload" in r.query]


def test_a_table_that_cannot_be_written_leaves_the_previous_file(
    store: Store, instance: dg.DagsterInstance
) -> None:
    version = {"table": pd.DataFrame({"x": [1, 2]})}

    @dg.asset
    def table() -> pd.DataFrame:
        return version["table"]

    resources = {"io_manager": store.io_manager}
    assert dg.materialize([table], resources=resources, instance=instance).success
    before = store.raw("table.parquet")

    version["table"] = pd.DataFrame({"x": [1, "not a number"], "y": [object(), object()]})
    result = dg.materialize([table], resources=resources, instance=instance, raise_on_error=False)
    assert not result.success
    assert store.files() == ["table.parquet"]
    assert store.raw("table.parquet") == before
    assert store.io_manager.read_table(dg.AssetKey("table"), None)["x"].tolist() == [1, 2]


def test_missing_bucket_fails_before_the_asset_runs(
    moto_s3: MotoS3, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.s3_support import S3_KEY_ID_VAR, S3_SECRET_VAR

    monkeypatch.setenv(S3_KEY_ID_VAR, S3_KEY_ID)
    monkeypatch.setenv(S3_SECRET_VAR, S3_SECRET)
    calls: list[int] = []

    @dg.asset
    def expensive() -> pd.DataFrame:
        calls.append(1)
        return pd.DataFrame({"x": [1]})

    io_manager = s3_io_manager(moto_s3, "s3://no-such-bucket-llm/tables")
    with pytest.raises(Exception) as raised:
        dg.materialize([expensive], resources={"io_manager": io_manager}, instance=instance)
    assert calls == []
    message = _messages(raised.value)
    assert "s3://no-such-bucket-llm/tables" in message
    assert "does not exist" in message and "aws s3 mb s3://no-such-bucket-llm" in message
    assert moto_s3.endpoint_url in message


def _messages(error: BaseException) -> str:
    texts = []
    current: BaseException | None = error
    while current is not None:
        texts.append(str(current))
        current = current.__cause__ or current.__context__
    return "\n".join(texts)


@pytest.mark.parametrize(
    ("base_dir", "expected"),
    [
        ("hdfs://namenode/tables", "scheme 'hdfs', which is not supported"),
        ("s3://AKIAEXAMPLE:hunter2-secret@bucket/t", "carries credentials"),
        ("s3://bucket/t?secret_key=hunter2-secret", "has a query or fragment"),
        ("s3:///tables", "names no valid bucket"),
        ("file://otherhost/tables", "must be local"),
    ],
)
def test_a_base_dir_that_cannot_work_is_refused_with_the_fix(base_dir: str, expected: str) -> None:
    io_manager = ParquetIOManager(base_dir=base_dir)
    with pytest.raises(UserError, match=expected) as raised:
        io_manager.uri_for(dg.AssetKey("a"), None)
    assert "hunter2-secret" not in str(raised.value)
    assert "ParquetIOManager.base_dir" in str(raised.value)


def test_endpoint_and_credentials_are_checked() -> None:
    with pytest.raises(UserError, match=r"http\(s\)://host\[:port\]"):
        ParquetIOManager(base_dir="s3://lake/t", endpoint_url="127.0.0.1:9000").read_table(
            dg.AssetKey("a"), None
        )
    half = ParquetIOManager(
        base_dir="s3://lake/t", endpoint_url="http://127.0.0.1:9", s3_access_key_id="AKIA"
    )
    with pytest.raises(UserError, match="only one of s3_access_key_id and s3_secret_access_key"):
        half.read_table(dg.AssetKey("a"), None)


def test_an_unreachable_endpoint_is_named_in_the_error(moto_s3: MotoS3) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    io_manager = ParquetIOManager(
        base_dir="s3://lake/tables",
        endpoint_url=f"http://127.0.0.1:{port}",
        s3_access_key_id="id",
        s3_secret_access_key="secret",
    )
    with (
        pytest.raises(OSError, match="cannot reach the bucket of s3://lake/tables") as raised,
        dg.build_init_resource_context() as init_context,
    ):
        io_manager.setup_for_execution(init_context)
    assert f"127.0.0.1:{port}" in str(raised.value) and "endpoint_url" in str(raised.value)


def test_gcs_uris_name_the_same_layout() -> None:
    io_manager = ParquetIOManager(base_dir="gcs://lake/llm", endpoint_url="http://127.0.0.1:9")
    key = dg.MultiPartitionKey({"region": "us/east", "date": "2026-11-02"})
    assert io_manager.uri_for(dg.AssetKey(["a", "b"]), key) == (
        "gs://lake/llm/a/b/date=2026-11-02/region=us%2Feast/data.parquet"
    )
    assert io_manager.uri_for(dg.AssetKey("a"), None) == "gs://lake/llm/a.parquet"


def test_offline_tests_never_reach_a_real_bucket() -> None:
    # conftest sets LLM_ASSETS_OFFLINE=1; pyarrow's sockets are not Python's, so the
    # socket guard would not see them: the IO manager refuses before connecting.
    with pytest.raises(UserError, match="LLM_ASSETS_OFFLINE is set"):
        ParquetIOManager(base_dir="s3://real-bucket/tables").read_table(dg.AssetKey("a"), None)


def test_a_plain_path_and_its_file_uri_are_the_same_files(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    @dg.asset(partitions_def=dg.StaticPartitionsDefinition(["2026-11-02"]))
    def daily() -> pd.DataFrame:
        return SAMPLE

    plain = ParquetIOManager(base_dir=str(tmp_path / "my data"))
    as_uri = ParquetIOManager(base_dir=f"file://{tmp_path / 'my data'}")
    result = dg.materialize(
        [daily], partition_key="2026-11-02", resources={"io_manager": plain}, instance=instance
    )
    assert result.success
    key = dg.AssetKey("daily")
    assert as_uri.path_for(key, "2026-11-02") == plain.path_for(key, "2026-11-02")
    assert plain.path_for(key, "2026-11-02").is_file()
    pd.testing.assert_frame_equal(as_uri.read_table(key, "2026-11-02"), SAMPLE)
    assert _uris(instance, "daily", result.run_id) == {
        "2026-11-02": as_uri.uri_for(key, "2026-11-02")
    }
    with pytest.raises(UserError, match="use uri_for"):
        ParquetIOManager(base_dir="s3://lake/t").path_for(key, None)


def test_s3_keys_never_shown_logged_or_stored(
    s3_bucket: S3Bucket,
    instance: dg.DagsterInstance,
    capfd: pytest.CaptureFixture[str],
) -> None:
    io_manager = s3_bucket.io_manager()
    literal = ParquetIOManager(
        base_dir="s3://lake/t", s3_access_key_id=S3_KEY_ID, s3_secret_access_key=S3_SECRET
    )
    for text in (repr(io_manager), str(io_manager), repr(literal), str(literal)):
        assert S3_SECRET not in text and S3_KEY_ID not in text
    assert "EnvVar('LLM_ASSETS_TEST_S3_SECRET')" in repr(io_manager)

    @dg.asset
    def table() -> pd.DataFrame:
        return SAMPLE

    result = dg.materialize([table], resources={"io_manager": io_manager}, instance=instance)
    assert result.success
    logged = "\n".join(str(entry) for entry in instance.all_logs(result.run_id))
    assert f"s3://{s3_bucket.name}/tables/table.parquet" in logged
    captured = capfd.readouterr()
    for text in (logged, captured.out, captured.err):
        assert S3_SECRET not in text and S3_KEY_ID not in text
    for key in s3_bucket.object_keys():
        data = s3_bucket.server.read(s3_bucket.name, key)
        assert S3_SECRET.encode() not in data and S3_KEY_ID.encode() not in data


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_example_pipeline_backfill_in_one_run_on_s3(
    s3_bucket: S3Bucket,
    simulator: SimulatorServer,
    instance: dg.DagsterInstance,
    tmp_path: Path,
) -> None:
    days = ["2026-11-01", "2026-11-02"]
    resources = {**make_resources(simulator, tmp_path), "io_manager": s3_bucket.io_manager()}
    result = dg.materialize(
        ASSETS,
        resources=resources,
        instance=instance,
        tags={ASSET_PARTITION_RANGE_START_TAG: days[0], ASSET_PARTITION_RANGE_END_TAG: days[-1]},
    )
    assert result.success
    assets = ["raw_reviews", "review_insights", "review_insights_reviewed", "daily_digest"]
    assets += [f"{name}_quarantine" for name in assets[1:]]  # the dead-letter tables
    assert s3_bucket.object_keys() == sorted(
        f"tables/{asset}/{day}.parquet" for asset in assets for day in days
    )
    io_manager = resources["io_manager"]
    for day in days:
        insights = io_manager.read_table(dg.AssetKey("review_insights"), day)
        assert insights["review_id"].tolist() == generate_reviews(day)["review_id"].tolist()
        assert (insights["llm_status"] == "ok").all()
        assert (insights["llm_run_id"] == result.run_id).all()
    root = f"s3://{s3_bucket.name}/tables"
    uris = _uris(instance, "review_insights", result.run_id)
    assert uris == {day: f"{root}/review_insights/{day}.parquet" for day in days}
    assert not (tmp_path / "data").exists()  # nothing fell back to local disk

    # trace reads the row and its input row from the bucket.
    defs = dg.Definitions(assets=ASSETS, resources=resources)
    row_id = f"{days[1]}-0003"
    trace = trace_row(defs, instance, "review_insights", row_id, days[1])
    assert trace.materialized_by_run_id == result.run_id and trace.prompt is not None
    assert trace.upstream[0].input_row is not None
    assert trace.upstream[0].input_row["review_id"] == row_id
    with pytest.raises(KeyError, match=f"{root}/review_insights/2026-11-03.parquet"):
        trace_row(defs, instance, "review_insights", row_id, "2026-11-03")
