"""``InboxFeed``: files dropped in a directory become dynamic partitions, runs and a table.

One feed gives three things that belong together: a ``DynamicPartitionsDefinition`` named
``<name>_files``, the asset ``<name>`` that reads a partition's file into a DataFrame, and
(``build_sensor``) a sensor that adds a partition and requests a run for each new file.

How the asset finds a partition's file: it never builds a path from the key. It lists the
inbox the way the sensor does (plain files only) and takes the file whose name and content give
the key back (``llm_assets.sensors.inbox_files.partition_key_for``). Nothing beside the inbox
has to be kept in step, a re-materialization from the UI or a backfill finds the file the same
way, and a key can never reach outside the directory. A run the sensor requested also carries
the file's full SHA-256 in the tag ``llm_assets/inbox_sha256``, which the asset checks.

How the same content never runs twice: the run key is the content's SHA-256, and Dagster's
sensor daemon creates no second run for a run key that already has a run of the same sensor
(a run it created but never launched, it launches). So a tick that died after creating its
run and before saving its cursor is harmless: the next tick, from the old cursor, requests
the same run key again and the daemon skips it. Before requesting content its cursor does not
know, the sensor looks for such a run itself and reuses its partition key, so a renamed copy
of an old file or a reset cursor never adds a second partition for the same content.
"""

import os
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from llm_assets.sensors.inbox_files import (
    FileProblem,
    find_partition_file,
    parse_table,
    unlistable,
)
from llm_assets.sensors.inbox_scan import InboxCursor, scan_inbox

FILE_TAG = "llm_assets/inbox_file"
SHA256_TAG = "llm_assets/inbox_sha256"
# Dagster's own run tags (dagster._core.storage.tags), spelled out to stay off private modules.
_RUN_KEY_TAG = "dagster/run_key"
_SENSOR_TAG = "dagster/sensor_name"
_PARTITION_TAG = "dagster/partition"
_NAME = re.compile(r"^[A-Za-z0-9_]+$")
_STOPPED_NOTE = (
    " Stopped until turned on in the UI (Automation, or the toggle on this page); the Dagster "
    "daemon evaluates it (`dagster dev` starts one)."
)


class InboxFeed:
    """A directory whose CSV, JSONL and Parquet files become partitions of an asset.

    Each new file becomes the dynamic partition ``<stem>-<8 hex of its SHA-256>`` and one run
    (run key: the full SHA-256). A file is picked up once its size and mtime are unchanged
    between two ticks or it is ``settle_s`` old; write elsewhere (or to a name starting with
    ``.``) and rename it in to be safe. Bad files (empty, not UTF-8, unparseable, without
    rows or a required column) are logged as warnings and named in the skip message once per
    content, and never hold back good files; a corrected file (new content) is picked up.
    Symlinks, subdirectories and names starting with ``.`` are ignored. A partition's file
    must stay in the inbox for the partition to be re-materialized. A tick reads each new file
    once (hash and parse): keep ``max_files_per_tick`` files well inside the sensor's
    evaluation timeout (60 s by default). Bad files are judged again only when their content
    changes; after loosening ``required_columns``, reset the sensor's cursor to re-check them.

    Args:
        name: Asset name; also names the partitions (``<name>_files``) and the sensor.
        directory: The inbox. A relative path is resolved against the working directory of the
            process that evaluates the sensor or runs the asset; prefer an absolute path.
        required_columns: Columns every file must have.
        settle_s: Age after which a file counts as completely written.
        max_files_per_tick: Files read (hashed and checked) per tick; the rest wait a tick.
        group_name: Asset group.
        io_manager_key: IO manager storing the asset (``ParquetIOManager`` by default).

    Examples:
        .. code-block:: python

            import dagster as dg
            from llm_assets import LLMResource, ParquetIOManager, ResponseLedger, llm_asset
            from llm_assets.sensors import InboxFeed

            feed = InboxFeed(
                name="partner_reviews",
                directory="/srv/inbox/reviews",
                required_columns=["review_id", "body"],
            )
            insights = llm_asset(task, upstream=feed.asset, name="partner_review_insights")
            defs = dg.Definitions(
                assets=[feed.asset, insights],
                sensors=[feed.build_sensor(target=[feed.asset, insights])],
                resources={
                    "llm": LLMResource(api_key=dg.EnvVar("OPENAI_API_KEY")),
                    "ledger": ResponseLedger(),
                    "io_manager": ParquetIOManager(base_dir="data"),
                },
            )
    """

    def __init__(
        self,
        name: str,
        directory: str | os.PathLike[str],
        *,
        required_columns: Sequence[str] = (),
        settle_s: float = 5.0,
        max_files_per_tick: int = 50,
        group_name: str | None = None,
        io_manager_key: str = "io_manager",
    ) -> None:
        if not _NAME.match(name):
            raise ValueError(f"feed name {name!r} must match [A-Za-z0-9_]+ (it names an asset)")
        if settle_s < 0 or max_files_per_tick < 1:
            raise ValueError("settle_s must be >= 0 and max_files_per_tick >= 1")
        self.name = name
        self.directory = Path(directory)
        self.required_columns = tuple(required_columns)
        self.settle_s = settle_s
        self.max_files_per_tick = max_files_per_tick
        self.partitions_def = dg.DynamicPartitionsDefinition(name=f"{name}_files")
        self.asset = self._build_asset(group_name, io_manager_key)

    def build_sensor(
        self,
        target: Sequence[dg.AssetsDefinition] | dg.AssetSelection | dg.JobDefinition | None = None,
        *,
        name: str | None = None,
        minimum_interval_seconds: int = 30,
        default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
        description: str | None = None,
    ) -> dg.SensorDefinition:
        """The sensor that turns new files into partitions and runs.

        Args:
            target: What each run materializes: assets, an asset selection or a job over the
                feed's partitions; include ``self.asset``. Defaults to ``[self.asset]``.
            name: Sensor name; defaults to ``<feed name>_sensor``.
            minimum_interval_seconds: Seconds between ticks.
            default_status: ``RUNNING`` to start with the daemon, else turn it on in the UI.
            description: Shown in the UI; by default, the inbox and how to turn the sensor on.

        Returns:
            The sensor definition.

        Examples:
            >>> feed = InboxFeed(name="partner_reviews", directory="inbox")
            >>> feed.build_sensor(target=[feed.asset]).name
            'partner_reviews_sensor'
        """
        sensor_name = name or f"{self.name}_sensor"
        if description is None:
            description = (
                f"Runs each new CSV/JSONL/Parquet file dropped in {self.directory.absolute()}."
            )
            if default_status == dg.DefaultSensorStatus.STOPPED:
                description += _STOPPED_NOTE

        @dg.sensor(
            name=sensor_name,
            target=target if target is not None else [self.asset],
            minimum_interval_seconds=minimum_interval_seconds,
            default_status=default_status,
            description=description,
        )
        def _inbox_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
            return self._tick(context, sensor_name)

        return _inbox_sensor

    def load(
        self, partition_key: str, expected_sha256: str | None = None
    ) -> tuple[pd.DataFrame, dict[str, Any]]:
        """Reads the file of a partition and checks that its content is the ingested one.

        Returns:
            The table and its materialization metadata (file, path, sha256, bytes, rows).

        Raises:
            dagster.Failure: The file is gone, changed since it was ingested, or bad.
        """
        try:
            file, data, sha = find_partition_file(self.directory, partition_key, expected_sha256)
        except FileProblem as exc:
            raise self._failure(partition_key, str(exc)) from None
        try:
            table = parse_table(data, file.format, self.required_columns)
        except FileProblem as exc:
            raise self._failure(partition_key, f"{file.name} is bad: {exc}") from None
        metadata = {
            "dagster/row_count": len(table),
            "inbox_file": file.name,
            "path": str(file.path.resolve()),
            "sha256": sha,
            "bytes": len(data),
        }
        return table, metadata

    def _failure(self, partition_key: str, problem: str) -> dg.Failure:
        return dg.Failure(
            description=f"inbox feed '{self.name}', partition '{partition_key}': {problem}",
            metadata={"partition": partition_key, "inbox": str(self.directory)},
            allow_retries=False,
        )

    def _build_asset(self, group_name: str | None, io_manager_key: str) -> dg.AssetsDefinition:
        with warnings.catch_warnings():
            # Single-run backfills (beta in Dagster 1.13) read a range of files in one run.
            warnings.simplefilter("ignore", dg.BetaWarning)
            decorate = dg.asset(
                name=self.name,
                partitions_def=self.partitions_def,
                backfill_policy=dg.BackfillPolicy.single_run(),
                group_name=group_name,
                io_manager_key=io_manager_key,
                kinds={"pandas"},
                description=f"The rows of each file dropped in {self.directory.absolute()}, one "
                "partition a file.",
            )

        @decorate
        def _inbox_asset(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
            tags = context.run.tags
            loaded = {}
            for key in context.partition_keys:
                # The sensor's tags name one partition's content; a backfill run has none.
                expected = tags.get(SHA256_TAG) if tags.get(_PARTITION_TAG) == key else None
                loaded[key] = self.load(key, expected)
            if len(loaded) == 1:
                ((table, metadata),) = loaded.values()
                return dg.MaterializeResult(value=table, metadata=metadata)
            for key, (_, metadata) in loaded.items():
                context.add_asset_metadata(metadata, partition_key=key)
            return dg.MaterializeResult(value={key: table for key, (table, _) in loaded.items()})

        return _inbox_asset

    def _tick(self, context: dg.SensorEvaluationContext, sensor_name: str) -> dg.SensorResult:
        try:
            cursor = InboxCursor.from_json(context.cursor)
        except ValueError as exc:
            context.log.warning(f"starting from an empty cursor: {exc}")
            cursor = InboxCursor()
        try:
            scan = scan_inbox(
                self.directory,
                cursor,
                required_columns=self.required_columns,
                settle_s=self.settle_s,
                max_files=self.max_files_per_tick,
                earlier_run=_earlier_run(context, sensor_name),
            )
        except OSError as exc:
            problem = unlistable(self.directory, exc)
            context.log.warning(problem)
            return dg.SensorResult(skip_reason=problem, cursor=context.cursor)
        for file_name, problem in scan.bad:
            context.log.warning(f"skipped {file_name}: {problem}")
        for file_name, why in scan.known:
            context.log.info(f"no new run for {file_name}: {why}")
        for new in scan.new:
            if new.earlier_run:
                context.log.info(
                    f"{new.name}: content already requested as partition {new.partition_key} "
                    f"(run {new.earlier_run[:8]}); requested again under the same run key, which "
                    "the daemon skips, or launches if that run never started"
                )
            else:
                context.log.info(f"{new.name}: {new.rows} rows -> partition {new.partition_key}")
        requests = [
            dg.RunRequest(
                partition_key=new.partition_key,
                run_key=new.sha256,
                tags={FILE_TAG: new.name, SHA256_TAG: new.sha256},
            )
            for new in scan.new
        ]
        keys = sorted({new.partition_key for new in scan.new})
        return dg.SensorResult(
            run_requests=requests,
            dynamic_partitions_requests=[self.partitions_def.build_add_request(keys)]
            if keys
            else None,
            cursor=scan.cursor.to_json(),
            skip_reason=None if requests else scan.skip_message(self.directory),
        )


def _earlier_run(
    context: dg.SensorEvaluationContext, sensor_name: str
) -> Callable[[str], tuple[str, str] | None] | None:
    """Finds a run this sensor already requested for a content, as the daemon's run-key check."""
    try:
        instance = context.instance
    except dg.DagsterInvariantViolationError:  # a test context without an instance
        return None

    def lookup(sha256: str) -> tuple[str, str] | None:
        tags = {_RUN_KEY_TAG: sha256, _SENSOR_TAG: sensor_name}
        for run in instance.get_runs(filters=dg.RunsFilter(tags=tags), limit=1):
            if _PARTITION_TAG in run.tags:
                return run.tags[_PARTITION_TAG], run.run_id
        return None

    return lookup
