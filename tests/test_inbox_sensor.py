"""The inbox sensor: files dropped in a directory become partitions, runs and tables, once."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
from reviews_example.inbox import INBOX_ASSETS, INBOX_SENSORS
from reviews_example.pipeline import ASSETS, INSIGHT_TASK
from reviews_example.sample_reviews import generate_reviews

import llm_assets.sensors
from llm_assets.factory import llm_asset
from llm_assets.resources.ledger import ResponseLedger
from llm_assets.resources.llm import LLMResource
from llm_assets.resources.storage import ParquetIOManager
from llm_assets.sensors import FILE_TAG, SHA256_TAG, InboxFeed, partition_key_for
from llm_assets.simulator import SimulatorServer
from tests.daemon_support import SIMULATED_RESOURCES, DaemonProcess

COLUMNS = ["review_id", "product", "rating", "title", "body"]
DAEMON = str(Path(sys.executable).with_name("dagster-daemon"))
DAGSTER = str(Path(sys.executable).with_name("dagster"))


def write_reviews(path: Path, count: int = 5, day: str = "2026-11-02") -> pd.DataFrame:
    table = generate_reviews(day, count=count)[[*COLUMNS, "author"]]
    table["rating"] = table["rating"].astype(str)
    tmp = path.with_name(f".{path.name}.tmp")  # written aside and renamed in, like a partner
    if path.suffix == ".csv":
        table.to_csv(tmp, index=False)
    elif path.suffix == ".jsonl":
        table.to_json(tmp, orient="records", lines=True)
    else:
        table.to_parquet(tmp, index=False)
    tmp.replace(path)
    return table


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def runs_the_daemon_finds(
    instance: dg.DagsterInstance, sensor_name: str, run_key: str | None
) -> list[dg.DagsterRun]:
    """The daemon's run-key check (``dagster._daemon.sensor.fetch_existing_runs``): runs with
    the request's run key that the same sensor created. A request that has one creates no run."""
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/run_key": run_key or ""}))
    return [run for run in runs if run.tags.get("dagster/sensor_name") == sensor_name]


class LogLines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.getMessage()}")


class Branch:
    """A feed over ``inbox``, an llm_asset over it and the sensor targeting both."""

    def __init__(self, tmp_path: Path, resources: dict[str, Any] | None = None, **options: Any):
        self.inbox = tmp_path / "inbox"
        self.inbox.mkdir(exist_ok=True)
        options.setdefault("settle_s", 0.0)
        self.feed = InboxFeed("partner_reviews", self.inbox, required_columns=COLUMNS, **options)
        self.insights = llm_asset(INSIGHT_TASK, upstream=self.feed.asset, name="insights")
        self.sensor = self.feed.build_sensor(target=[self.feed.asset, self.insights])
        # Tests that never run the llm_asset get an endpoint nobody listens on.
        self.resources = resources or {
            "llm": LLMResource(base_url="http://127.0.0.1:9/v1", api_key="unused"),
            "ledger": ResponseLedger(sqlite_path=str(tmp_path / "ledger.sqlite")),
            "io_manager": ParquetIOManager(base_dir=str(tmp_path / "data")),
        }
        self.defs = dg.Definitions(
            assets=[self.feed.asset, self.insights], sensors=[self.sensor], resources=self.resources
        )

    def tick(self, instance: dg.DagsterInstance, cursor: str | None) -> tuple[Any, list[str]]:
        """One sensor evaluation, as the daemon's code server runs it, with its log lines."""
        context = dg.build_sensor_context(
            instance=instance,
            instance_ref=instance.get_ref(),
            cursor=cursor,
            sensor_name=self.sensor.name,
            definitions=self.defs,
        )
        handler = LogLines()
        context.log.addHandler(handler)
        return self.sensor.evaluate_tick(context), handler.lines

    def add_partitions(self, instance: dg.DagsterInstance, data: Any) -> None:
        """What the daemon does first with a tick's result."""
        for request in data.dynamic_partitions_requests:
            instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)

    def launch(
        self, instance: dg.DagsterInstance, data: Any, *, with_llm: bool = False
    ) -> list[str]:
        """Then, per run request, what the daemon does: skip it if this sensor already has a run
        with its run key, else create the run tagged with run key and sensor name, and run it.
        Returns the ids of the runs created."""
        self.add_partitions(instance, data)
        created = []
        for run_request in data.run_requests:
            if runs_the_daemon_finds(instance, self.sensor.name, run_request.run_key):
                continue
            result = dg.materialize(
                [self.feed.asset, self.insights] if with_llm else [self.feed.asset],
                partition_key=run_request.partition_key,
                instance=instance,
                resources=self.resources,
                # run_request.tags already holds dagster/sensor_name (evaluate_tick adds it).
                tags={**run_request.tags, "dagster/run_key": run_request.run_key},
            )
            assert result.success
            created.append(result.run_id)
        return created

    def materialize_failure(self, instance: dg.DagsterInstance, key: str) -> str:
        result = dg.materialize(
            [self.feed.asset],
            partition_key=key,
            instance=instance,
            resources=self.resources,
            raise_on_error=False,
        )
        assert not result.success
        error = result.get_step_failure_events()[0].step_failure_data.error
        assert error is not None
        return error.message


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def instance(request: pytest.FixtureRequest) -> dg.DagsterInstance:
    return request.getfixturevalue(f"{request.param}_instance")


def test_a_dropped_file_becomes_one_partition_one_run_and_a_table(
    instance: dg.DagsterInstance, resources: dict[str, Any], tmp_path: Path
) -> None:
    branch = Branch(tmp_path, resources)
    table = write_reviews(branch.inbox / "reviews-2026-11-02.csv")
    sha = sha256_of(branch.inbox / "reviews-2026-11-02.csv")

    data, lines = branch.tick(instance, None)
    (run_request,) = data.run_requests
    key = run_request.partition_key
    assert re.fullmatch(r"reviews-2026-11-02-[0-9a-f]{8}", key) and key.endswith(sha[:8])
    assert run_request.run_key == sha and run_request.tags[SHA256_TAG] == sha
    assert run_request.tags[FILE_TAG] == "reviews-2026-11-02.csv"
    assert [list(r.partition_keys) for r in data.dynamic_partitions_requests] == [[key]]
    assert "INFO reviews-2026-11-02.csv: 5 rows -> partition " + key in lines

    branch.launch(instance, data, with_llm=True)
    stored = pd.read_parquet(tmp_path / "data" / "partner_reviews" / f"{key}.parquet")
    assert stored["review_id"].tolist() == table["review_id"].tolist()
    insights = pd.read_parquet(tmp_path / "data" / "insights" / f"{key}.parquet")
    assert (insights["llm_status"] == "ok").sum() == 5
    event = instance.get_latest_materialization_event(dg.AssetKey("partner_reviews"))
    materialization = event.asset_materialization if event else None
    assert materialization is not None and materialization.metadata["sha256"].value == sha

    # Same file next tick, or an identical copy under another name: nothing to request.
    data, _ = branch.tick(instance, data.cursor)
    assert data.run_requests == [] and data.skip_message.startswith("no new files in")
    shutil.copy(branch.inbox / "reviews-2026-11-02.csv", branch.inbox / "copy.csv")
    data, lines = branch.tick(instance, data.cursor)
    assert data.run_requests == [] and not data.dynamic_partitions_requests
    assert (
        "INFO no new run for copy.csv: same content as reviews-2026-11-02.csv (ingested)" in lines
    )

    # The original leaves, then the cursor is reset: the copy is requested again under the
    # original's partition and run key, and the daemon's run-key check stops it.
    (branch.inbox / "reviews-2026-11-02.csv").unlink()
    data, _ = branch.tick(instance, data.cursor)
    assert data.run_requests == []
    data, lines = branch.tick(instance, None)
    assert [(r.partition_key, r.run_key) for r in data.run_requests] == [(key, sha)]
    assert any("content already requested as partition " + key in line for line in lines)
    assert branch.launch(instance, data) == []
    assert len(instance.get_runs()) == 1
    assert instance.get_dynamic_partitions("partner_reviews_files") == [key]


def test_a_tick_that_died_before_saving_its_cursor_yields_no_second_run(
    sqlite_instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    branch = Branch(tmp_path)
    write_reviews(branch.inbox / "reviews.csv")
    old_cursor = None
    first, _ = branch.tick(sqlite_instance, old_cursor)
    (request,) = first.run_requests

    # Died after adding the partition, before creating the run: the retry asks for the same run.
    branch.add_partitions(sqlite_instance, first)
    again, _ = branch.tick(sqlite_instance, old_cursor)
    assert [(r.partition_key, r.run_key) for r in again.run_requests] == [
        (request.partition_key, request.run_key)
    ]
    # Died after creating the run: the retry from the old cursor asks for the same run key,
    # and the daemon finds the run this sensor created with it, so it creates none.
    (run_id,) = branch.launch(sqlite_instance, again)
    retry, lines = branch.tick(sqlite_instance, old_cursor)
    assert [(r.partition_key, r.run_key) for r in retry.run_requests] == [
        (request.partition_key, request.run_key)
    ]
    assert any(f"(run {run_id[:8]})" in line for line in lines)
    assert [
        run.run_id
        for run in runs_the_daemon_finds(sqlite_instance, branch.sensor.name, request.run_key)
    ] == [run_id]
    assert branch.launch(sqlite_instance, retry) == []
    assert [run.run_id for run in sqlite_instance.get_runs()] == [run_id]


def test_a_file_still_being_written_waits_until_it_settles(
    sqlite_instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    branch = Branch(tmp_path, settle_s=3600)
    old = branch.inbox / "old.csv"
    write_reviews(old, day="2026-11-01")
    os.utime(old, (time.time() - 7200, time.time() - 7200))  # older than settle_s
    growing = branch.inbox / "growing.csv"
    lines = (generate_reviews("2026-11-03", count=6)[COLUMNS].to_csv(index=False)).splitlines()
    growing.write_text("\n".join(lines[:3]) + "\n")

    data, _ = branch.tick(sqlite_instance, None)
    assert [r.tags[FILE_TAG] for r in data.run_requests] == ["old.csv"]
    with growing.open("a") as handle:  # the writer is not done: size changes between ticks
        handle.write("\n".join(lines[3:]) + "\n")
    data, _ = branch.tick(sqlite_instance, data.cursor)
    assert data.run_requests == [] and "waiting for growing.csv to settle" in data.skip_message
    data, log = branch.tick(sqlite_instance, data.cursor)  # unchanged since the last tick
    assert [r.run_key for r in data.run_requests] == [sha256_of(growing)]
    assert any("growing.csv: 6 rows" in line for line in log)


BAD_FILES = {
    "no-body.csv": (
        b"review_id,product,rating,title\n1,Lamp,5,Nice\n",
        "missing required column(s) body",
    ),
    "empty.csv": (b"", "the file is empty (0 bytes)"),
    "header-only.csv": (b"review_id,product,rating,title,body\n", "no rows"),
    "garbage.parquet": (b"PAR1" + bytes(range(256)) * 4, "cannot read as Parquet"),
    "broken.jsonl": (b'{"review_id": 1}\n{"review_id": \n', "line 2 is not valid JSON"),
}  # fmt: skip


def test_bad_files_are_reported_once_and_never_hold_back_good_ones(
    sqlite_instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    branch = Branch(tmp_path)
    for name, (content, _) in BAD_FILES.items():
        (branch.inbox / name).write_bytes(content)

    data, lines = branch.tick(sqlite_instance, None)
    assert data.run_requests == []
    for name, (_, problem) in BAD_FILES.items():
        assert f"{name}: {problem}" in data.skip_message
        assert any(line.startswith(f"WARNING skipped {name}: {problem}") for line in lines)

    # A new bad file beside a good one in the same tick: the good one runs, the old bad ones
    # are not reported again.
    write_reviews(branch.inbox / "good.jsonl")
    latin1 = "review_id,product,rating,title,body\n1,Lamp,5,Très bien,Très bien\n"
    (branch.inbox / "latin1.csv").write_bytes(latin1.encode("latin-1"))
    data, lines = branch.tick(sqlite_instance, data.cursor)
    assert [r.tags[FILE_TAG] for r in data.run_requests] == ["good.jsonl"]
    assert [line for line in lines if line.startswith("WARNING")] == [
        "WARNING skipped latin1.csv: not UTF-8 (byte 0xe8 at offset 47); re-save the file as UTF-8"
    ]
    data, lines = branch.tick(sqlite_instance, data.cursor)
    assert data.run_requests == [] and not [line for line in lines if "WARNING" in line]

    # A corrected file is new content: it runs.
    write_reviews(branch.inbox / "no-body.csv")
    data, _ = branch.tick(sqlite_instance, data.cursor)
    assert [r.tags[FILE_TAG] for r in data.run_requests] == ["no-body.csv"]

    # The cursor forgets files that left the inbox.
    for path in branch.inbox.iterdir():
        path.unlink()
    data, _ = branch.tick(sqlite_instance, data.cursor)
    assert data.cursor == '{"v":1,"files":{}}'


def test_symlinks_subdirectories_and_keys_reaching_outside_are_ignored(
    sqlite_instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    branch = Branch(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    write_reviews(outside / "outside.csv")
    (branch.inbox / "link.csv").symlink_to("../outside/outside.csv")
    (branch.inbox / "linked-dir").symlink_to("../outside", target_is_directory=True)
    (branch.inbox / "nested").mkdir()
    write_reviews(branch.inbox / "nested" / "inner.csv")
    write_reviews(branch.inbox / ".hidden.csv")
    (branch.inbox / "notes.txt").write_text("not a table\n")

    data, _ = branch.tick(sqlite_instance, None)
    assert data.run_requests == [] and data.skip_message == f"no new files in {branch.inbox}"

    short = sha256_of(outside / "outside.csv")[:8]
    keys = [f"link-{short}", f"../outside/outside-{short}", f"..-{short}"]
    sqlite_instance.add_dynamic_partitions("partner_reviews_files", keys)
    for key in keys:
        message = branch.materialize_failure(sqlite_instance, key)
        assert f"partition '{key}'" in message and "no longer in the inbox" in message


def test_the_asset_fails_clearly_when_its_file_changed_or_vanished(
    sqlite_instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    branch = Branch(tmp_path)
    path = branch.inbox / "reviews.csv"
    write_reviews(path)
    original = path.read_bytes()
    data, _ = branch.tick(sqlite_instance, None)
    (key,) = data.dynamic_partitions_requests[0].partition_keys
    sqlite_instance.add_dynamic_partitions("partner_reviews_files", [key])

    write_reviews(path, count=6)
    message = branch.materialize_failure(sqlite_instance, key)
    assert "reviews.csv now has sha256" in message and "changed after it was ingested" in message
    path.unlink()
    assert "no longer in the inbox" in branch.materialize_failure(sqlite_instance, key)
    path.write_bytes(original)  # the original bytes back: the partition materializes again
    result = dg.materialize(
        [branch.feed.asset], partition_key=key, instance=sqlite_instance, resources=branch.resources
    )
    assert result.success


def test_one_run_per_content_and_at_most_max_files_read_per_tick(
    sqlite_instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    branch = Branch(tmp_path, max_files_per_tick=2)
    for day in ("2026-11-01", "2026-11-02", "2026-11-03"):
        write_reviews(branch.inbox / f"{day}.parquet", day=day)
    shutil.copy(branch.inbox / "2026-11-01.parquet", branch.inbox / "again.parquet")
    os.utime(branch.inbox / "again.parquet", ns=(1, 1))  # oldest: read first

    data, _ = branch.tick(sqlite_instance, None)
    assert [r.tags[FILE_TAG] for r in data.run_requests] == ["again.parquet"]
    data, _ = branch.tick(sqlite_instance, data.cursor)
    assert sorted(r.tags[FILE_TAG] for r in data.run_requests) == [
        "2026-11-02.parquet",
        "2026-11-03.parquet",
    ]


def test_the_example_branch_loads_beside_the_example_pipeline(tmp_path: Path) -> None:
    from reviews_example.definitions import (
        local_resources,
        nightly_enrichment_job,
        nightly_enrichment_schedule,
    )

    from llm_assets.versions import resolve_model_versions

    defs = resolve_model_versions(
        dg.Definitions(
            assets=[*ASSETS, *INBOX_ASSETS],
            jobs=[nightly_enrichment_job],
            schedules=[nightly_enrichment_schedule],
            sensors=INBOX_SENSORS,
            resources=local_resources(),
        )
    )
    dg.Definitions.validate_loadable(defs)
    (sensor,) = INBOX_SENSORS
    assert sensor.name == "partner_reviews_sensor"
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    assert llm_assets.sensors.__all__ == sorted(llm_assets.sensors.__all__)
    assert {"InboxFeed", "partition_key_for"} <= set(llm_assets.sensors.__all__)
    assert partition_key_for("a b.csv", "0" * 64) == "a_b-00000000"


DAEMON_DEFS = (
    """
import dagster as dg
from llm_assets import LLMResource, ParquetIOManager, ResponseLedger, resolve_model_versions
from reviews_example.inbox import partner_reviews_branch

assets, sensors = partner_reviews_branch(
    {inbox!r}, settle_s=0.0, minimum_interval_seconds=1,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
defs = resolve_model_versions(dg.Definitions(
    assets=assets,
    sensors=sensors,
    executor=dg.in_process_executor,  # one process per run: fewer imports on a busy machine
    resources="""
    + SIMULATED_RESOURCES
    + """,
))
"""
)


class Daemon(DaemonProcess):
    """``dagster-daemon run`` on a workspace in ``tmp_path`` watching its inbox folder."""

    def __init__(self, tmp_path: Path, simulator: SimulatorServer) -> None:
        self.home = tmp_path / "home"
        self.home.mkdir()
        # Runs launch as soon as the sensor daemon submits them, not through a queue.
        (self.home / "dagster.yaml").write_text(
            "run_coordinator:\n  module: dagster._core.run_coordinator\n"
            "  class: DefaultRunCoordinator\ntelemetry:\n  enabled: false\n"
        )
        self.inbox = tmp_path / "inbox"
        self.inbox.mkdir()
        (tmp_path / "defs.py").write_text(
            DAEMON_DEFS.format(
                inbox=str(self.inbox),
                base_url=simulator.base_url,
                ledger=str(tmp_path / "ledger.sqlite"),
                data=str(tmp_path / "data"),
            )
        )
        self.workspace = tmp_path / "workspace.yaml"
        self.workspace.write_text(
            "load_from:\n  - python_file:\n      relative_path: defs.py\n"
            f"      working_directory: {tmp_path}\n"
        )
        env = {**os.environ, "DAGSTER_HOME": str(self.home)}
        super().__init__(tmp_path, env, ["-w", str(self.workspace)])

    def wait_for_success(
        self, instance: dg.DagsterInstance, file_name: str, timeout_s: float = 150
    ) -> dg.DagsterRun:
        def succeeded() -> dg.DagsterRun | None:
            for run in instance.get_runs(filters=dg.RunsFilter(tags={FILE_TAG: file_name})):
                assert run.status != dg.DagsterRunStatus.FAILURE, self.log.read_text()[-5000:]
                if run.status == dg.DagsterRunStatus.SUCCESS:
                    return run
            return None

        self.wait_until(succeeded, f"successful run for {file_name}", timeout_s)
        found = succeeded()
        assert found is not None
        return found


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_daemon_runs_each_dropped_file_once_across_restarts(
    tmp_path: Path, simulator: SimulatorServer
) -> None:
    daemon = Daemon(tmp_path, simulator)
    first = daemon.inbox / "reviews-2026-11-02.csv"
    write_reviews(first)
    instance = dg.DagsterInstance.from_config(str(daemon.home))
    try:
        daemon.start()
        run = daemon.wait_for_success(instance, first.name)
        key = run.tags["dagster/partition"]
        assert run.tags["dagster/run_key"] == sha256_of(first)
        insights = pd.read_parquet(tmp_path / "data" / "partner_review_insights" / f"{key}.parquet")
        assert (insights["llm_status"] == "ok").sum() == 5
        daemon.stop()

        # The cursor is lost (as if every tick had died before saving it) and a renamed copy
        # of the first file arrives with a new file. The sensor requests the first content
        # again under its run key, the daemon skips it: only the new file gets a run.
        subprocess.run(
            [DAGSTER, "sensor", "cursor", "partner_reviews_sensor", "--delete",
             "-w", str(daemon.workspace)],
            cwd=tmp_path, env=daemon.env, check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        shutil.copy(first, daemon.inbox / "renamed-copy.csv")
        write_reviews(daemon.inbox / "reviews-2026-11-03.csv", count=3, day="2026-11-03")
        daemon.start()
        daemon.wait_for_success(instance, "reviews-2026-11-03.csv")
    finally:
        daemon.stop()
        instance.dispose()
    # Dagster's own words for the skipped duplicate (dagster._daemon.sensor, 1.13).
    skipped = re.search(
        r"Skipping 1 run .* already completed with run keys: (.*)", daemon.log.read_text()
    )
    assert skipped is not None and sha256_of(first) in skipped.group(1)
    runs = instance.get_runs()
    assert sorted(r.tags[FILE_TAG] for r in runs) == [
        "reviews-2026-11-02.csv",
        "reviews-2026-11-03.csv",
    ]
    assert len(instance.get_dynamic_partitions("partner_reviews_files")) == 2


def test_a_single_run_backfill_reads_each_partitions_own_file(
    sqlite_instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    branch = Branch(tmp_path)
    write_reviews(branch.inbox / "a.csv", count=2, day="2026-11-01")
    write_reviews(branch.inbox / "b.jsonl", count=3, day="2026-11-02")
    data, _ = branch.tick(sqlite_instance, None)
    branch.add_partitions(sqlite_instance, data)
    first, last = sqlite_instance.get_dynamic_partitions("partner_reviews_files")
    result = dg.materialize(
        [branch.feed.asset],
        instance=sqlite_instance,
        resources=branch.resources,
        tags={
            "dagster/asset_partition_range_start": first,
            "dagster/asset_partition_range_end": last,
        },
    )
    assert result.success
    rows = {
        key: len(pd.read_parquet(tmp_path / "data" / "partner_reviews" / f"{key}.parquet"))
        for key in (first, last)
    }
    assert (
        sorted(rows.values()) == [2, 3]
        and rows[partition_key_for("a.csv", sha256_of(branch.inbox / "a.csv"))] == 2
    )


def test_a_missing_inbox_or_a_foreign_cursor_is_a_warning_not_a_crash(
    sqlite_instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    branch = Branch(tmp_path)
    branch.inbox.rmdir()
    data, lines = branch.tick(sqlite_instance, '{"v":1,"files":{}}')
    assert data.run_requests == [] and "cannot be listed" in data.skip_message
    assert data.cursor == '{"v":1,"files":{}}' and any("WARNING" in line for line in lines)

    branch.inbox.mkdir()
    write_reviews(branch.inbox / "reviews.csv")
    data, lines = branch.tick(sqlite_instance, "not json")
    assert "WARNING starting from an empty cursor: not an inbox cursor" in "\n".join(lines)
    assert [r.tags[FILE_TAG] for r in data.run_requests] == ["reviews.csv"]


def test_a_missing_relative_inbox_is_named_by_its_absolute_path_and_the_fix(
    sqlite_instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    feed = InboxFeed("partner_reviews", "inbox", required_columns=COLUMNS)
    sensor = feed.build_sensor()
    context = dg.build_sensor_context(
        instance=sqlite_instance,
        sensor_name=sensor.name,
        definitions=dg.Definitions(assets=[feed.asset], sensors=[sensor]),
    )
    data = sensor.evaluate_tick(context)

    where = tmp_path / "inbox"
    assert data.run_requests == []
    assert data.skip_message == (
        f"inbox {where} cannot be listed (No such file or directory): create it "
        f"(mkdir -p {where}) or give the feed the directory files are dropped in"
    )
    # Where it looks and that it starts stopped, on the sensor's page.
    assert sensor.description is not None and str(where) in sensor.description
    assert "Stopped until turned on in the UI (Automation" in sensor.description
