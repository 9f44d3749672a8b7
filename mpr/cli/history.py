"""`mpr history` and `mpr replay`: reading and replaying release histories.

`mpr history --json` writes exactly what `temporal workflow show --output json` writes, so a
file from either replays with `mpr replay`, loads in the SDKs' replayers and diffs cleanly
against the other; its payloads stay encrypted, as the server holds them. The readable history
shows them decrypted with MPR_PAYLOAD_KEYS.
"""

import argparse
import json
import logging
import re
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC
from pathlib import Path
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.json_format import MessageToDict, ParseError
from google.protobuf.message import Message
from pydantic import ValidationError
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.enums.v1 import EventType, TimeoutType, WorkflowTaskFailedCause
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import (
    History,
    HistoryEvent,
    MarkerRecordedEventAttributes,
    WorkflowExecutionStartedEventAttributes,
)
from temporalio.client import Client, WorkflowHistory, WorkflowHistoryEventFilterType
from temporalio.runtime import Runtime, TelemetryConfig
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from mpr.cli.output import CliError, Subcommands, sender
from mpr.domain.channel.models import ChannelStart
from mpr.domain.core.identity import split_token
from mpr.domain.core.redaction import redact
from mpr.domain.mini_service.models import ServiceStart, mini_service_id
from mpr.domain.release.models import Environment, StartInput
from mpr.domain.release.release_id import release_id
from mpr.infra.codec import EncryptionCodec, PayloadKeyError, payloads_in
from mpr.infra.exit_codes import FAILURE, NOT_FOUND, USAGE
from mpr.infra.settings import Settings
from mpr.infra.temporal import PAYLOAD_CONVERTER, connect, payload_codec, replay_data_converter
from starters.releases import release_id_of
from workflows import channel, mini_service, release, worker_workflows

PLACEHOLDER_WORKFLOW_ID = "replayed-workflow"
SUMMARY_LENGTH = 120
# How the SDK core words a failed activation: `... Failure { message: "...", source: ...`.
CORE_FAILURE_MESSAGE = re.compile(r'message: "((?:[^"\\]|\\.)*)"')
FIRST_EVENT = WorkflowHistoryEventFilterType.ALL_EVENT  # read with page size 1
CLOSE_EVENT = WorkflowHistoryEventFilterType.CLOSE_EVENT


def register(commands: Subcommands) -> None:
    history = commands.add_parser(
        "history", help="a release's, mini service version's or channel's event history, "
                        "readable or as `temporal workflow show` JSON"
    )
    history.add_argument("release", nargs="?", metavar="RELEASE", help="workflow id")
    history.add_argument("--program", help="mini program id (instead of RELEASE)")
    history.add_argument("--version", help="version (instead of RELEASE)")
    history.add_argument("--app", help="target app (instead of RELEASE)")
    history.add_argument(
        "--env", default=Environment.PRODUCTION.value, choices=[env.value for env in Environment]
    )
    runs = history.add_mutually_exclusive_group()
    runs.add_argument("--run-id", help="a run other than the latest")
    runs.add_argument("--all-runs", action="store_true",
                      help="every run of a release that continued as new, oldest first")
    history.add_argument("--json", action="store_true",
                         help="exactly what `temporal workflow show --output json` writes")
    history.add_argument("--output", type=Path, metavar="FILE", help="write to FILE")
    history.set_defaults(handler=_history)

    replay = commands.add_parser(
        "replay", help="replay a history file against the current workflow code"
    )
    replay.add_argument("file", type=Path, metavar="FILE",
                        help="from `mpr history --json` or `temporal workflow show --output json`")
    replay.add_argument("--workflow-id",
                        help="the history's workflow id (default: read from the file)")
    replay.set_defaults(handler=_replay)


# --- mpr history -----------------------------------------------------------------------------


async def _history(args: argparse.Namespace) -> None:
    workflow_id = _workflow_id(args)
    if args.json and args.all_runs:
        raise CliError("--json writes one run, as `temporal workflow show` does: "
                       "drop --all-runs or pick a run with --run-id", USAGE)
    client = await _connect()
    with _server_errors(client, workflow_id, args.run_id):
        # Describe first: it names the latest run, even after a reset.
        handle = client.get_workflow_handle(workflow_id, run_id=args.run_id)
        run_id = (await handle.describe()).run_id
        shown = await _fetch(client, workflow_id, run_id)
        if args.json:
            _write(args.output, show_json(shown.events), f"history of run {run_id}")
            return
        chain = await _run_chain(client, workflow_id, run_id, shown)
        runs = chain if args.all_runs else [run_id]
        histories = [
            shown if run == run_id else await _fetch(client, workflow_id, run) for run in runs
        ]
    for problem in sorted(await _decrypt(client, histories)):
        print(f"mpr: payloads left encrypted: {problem}", file=sys.stderr)
    text = "\n\n".join(
        readable(workflow_id, run, chain, history)
        for run, history in zip(runs, histories, strict=True)
    )
    _write(args.output, text + "\n", f"history of {len(runs)} run(s)")


def _workflow_id(args: argparse.Namespace) -> str:
    parts = (args.program, args.version, args.app)
    if args.release and any(parts):
        raise CliError("give RELEASE or --program/--version/--app, not both", USAGE)
    if args.release:
        return str(args.release)
    if not all(parts):
        raise CliError("give RELEASE (a workflow id) or all of --program, --version, --app", USAGE)
    return release_id(args.program, args.version, args.app, args.env)


async def _connect() -> Client:
    try:
        return await connect(Settings.from_env())
    except ConnectionError as error:
        raise CliError(str(error)) from None


@contextmanager
def _server_errors(client: Client, workflow_id: str, run_id: str | None) -> Iterator[None]:
    """Turn Temporal's refusals into one line naming what was asked and where."""
    where = f"namespace {client.namespace} at {client.service_client.config.target_host}"
    asked = f"{workflow_id!r}" + (f" run {run_id}" if run_id else "")
    try:
        yield
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            raise CliError(f"no release {asked} in {where}: {error.message}", NOT_FOUND) from None
        raise CliError(f"Temporal ({where}) failed to show {asked}: {error.message}") from None


async def _decrypt(client: Client, histories: Sequence[WorkflowHistory]) -> set[str]:
    """Decrypt the payloads of `histories` in place, for reading; those that cannot be (their
    key is not in MPR_PAYLOAD_KEYS) stay encrypted, and the reasons are returned."""
    codec = client.data_converter.payload_codec
    problems: set[str] = set()
    if codec is None:
        return problems
    for history in histories:
        for event in history.events:
            for payload in payloads_in(event):
                try:
                    [plain] = await codec.decode([payload])
                except PayloadKeyError as error:
                    problems.add(str(error))
                    continue
                if plain is not payload:
                    payload.CopyFrom(plain)
    return problems


async def _fetch(client: Client, workflow_id: str, run_id: str) -> WorkflowHistory:
    return await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()


async def _run_chain(
    client: Client, workflow_id: str, run_id: str, history: WorkflowHistory
) -> list[str]:
    """The runs linked to this one by continue-as-new, oldest first."""
    earlier: list[str] = []
    previous = _started(history.events[0]).continued_execution_run_id
    while previous:
        earlier.insert(0, previous)
        first = await _one_event(client, workflow_id, previous, FIRST_EVENT)
        previous = _started(first).continued_execution_run_id if first else ""
    later: list[str] = []
    following = _next_run(history.events[-1])
    while following:
        later.append(following)
        close = await _one_event(client, workflow_id, following, CLOSE_EVENT)
        following = _next_run(close) if close else ""
    return [*earlier, run_id, *later]


async def _one_event(
    client: Client, workflow_id: str, run_id: str, which: WorkflowHistoryEventFilterType
) -> HistoryEvent | None:
    """The first event, or the close event (None while the run is open)."""
    events = client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history_events(
        page_size=1, event_filter_type=which
    )
    async for event in events:
        return event
    return None


def _started(event: HistoryEvent) -> WorkflowExecutionStartedEventAttributes:
    return event.workflow_execution_started_event_attributes


def _next_run(event: HistoryEvent) -> str:
    return str(event.workflow_execution_continued_as_new_event_attributes.new_execution_run_id)


def _write(output: Path | None, text: str, what: str) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text)
    except OSError as error:
        raise CliError(f"cannot write {output}: {error.strerror}") from None
    print(f"wrote the {what} to {output}")


# --- `temporal workflow show --output json`, byte for byte -----------------------------------


def show_json(events: Sequence[HistoryEvent]) -> str:
    """The History message as the `temporal` CLI writes it.

    The CLI marshals with Temporal's fork of Go's protojson: the proto3 JSON mapping that
    json_format also implements (camelCase names, EVENT_TYPE_* enum names, int64 as strings,
    base64 bytes and payloads, RFC 3339 times), but with fields in declaration order where
    json_format goes by field number, map keys sorted, integral doubles written without '.0',
    two-space indent and a final newline. Payloads stay raw (no JSON shorthand) so that
    replayers can read them.
    """
    history = History(events=events)
    data = _go_field_order(history, MessageToDict(history))
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _go_field_order(message: Message, data: dict[str, Any]) -> dict[str, Any]:
    return {
        field.json_name: _go_value(field, getattr(message, field.name), data[field.json_name])
        for field in message.DESCRIPTOR.fields  # declaration order
        if field.json_name in data
    }


def _go_value(field: FieldDescriptor, value: Any, data: Any) -> Any:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        # Temporal's maps (payload metadata, memo, search attributes, headers) have string keys.
        return {key: _go_single(value[key], data[key]) for key in sorted(data)}
    if field.is_repeated:
        return [_go_single(item, raw) for item, raw in zip(value, data, strict=True)]
    return _go_single(value, data)


def _go_single(value: Any, data: Any) -> Any:
    if isinstance(data, dict):  # a message; Timestamp and Duration came out as strings
        return _go_field_order(value, data)
    if isinstance(data, float) and data.is_integer() and abs(data) < 1e21:
        return int(data)  # Go writes 2 where Python writes 2.0 (from 1e21 on both use exponents)
    return data


# --- the readable history --------------------------------------------------------------------


def readable(workflow_id: str, run_id: str, chain: list[str], history: WorkflowHistory) -> str:
    lines = [f"{workflow_id}  run {run_id}  {len(history.events)} events"]
    if len(chain) > 1:
        lines.append(
            f"continued as new: this is run {chain.index(run_id) + 1} of {len(chain)} "
            f"(oldest first: {', '.join(chain)})"
        )
    labels: dict[int, str] = {}
    for event in history.events:
        lines.append(_event_line(event, labels))
        if label := _label(event):
            labels[event.event_id] = label
    return "\n".join(lines)


def _label(event: HistoryEvent) -> str | None:
    """What later events refer back to by event id: an activity (its type and id, as several
    run at once), an update (its name)."""
    if event.HasField("activity_task_scheduled_event_attributes"):
        scheduled = event.activity_task_scheduled_event_attributes
        return f"{scheduled.activity_type.name} #{scheduled.activity_id}"
    if event.HasField("workflow_execution_update_accepted_event_attributes"):
        accepted = event.workflow_execution_update_accepted_event_attributes
        return str(accepted.accepted_request.input.name)
    return None


def _event_line(event: HistoryEvent, labels: dict[int, str]) -> str:
    """One line: id, time, short event type and what an operator needs to know of the event."""
    kind = _short_type(event.event_type)
    describe = _DETAILS.get(kind)
    attributes = event.WhichOneof("attributes")
    detail = describe(getattr(event, attributes), labels) if describe and attributes else ""
    time = event.event_time.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return f"{event.event_id:>5}  {time}  {kind:<32}  {detail}".rstrip()


def _short_type(event_type: "EventType.ValueType") -> str:
    """EVENT_TYPE_ACTIVITY_TASK_SCHEDULED -> ActivityTaskScheduled"""
    name = EventType.Name(event_type).removeprefix("EVENT_TYPE_")
    return "".join(word.capitalize() for word in name.split("_"))


def _values(payloads: Payloads | Sequence[Payload]) -> list[Any]:
    items = list(payloads.payloads if isinstance(payloads, Payloads) else payloads)
    try:
        return PAYLOAD_CONVERTER.from_payloads(items)
    except (KeyError, RuntimeError, ValueError):
        encodings = ", ".join(p.metadata.get("encoding", b"?").decode() for p in items)
        return [f"<not JSON: {encodings}>"]


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _payload_json(payloads: Payloads | Sequence[Payload]) -> str:
    """Payloads in full, one argument as itself, several as a list; whitelisted user ids are
    counted, not shown, as in the audit log (this output ends up in tickets)."""
    values = [redact(value) if isinstance(value, dict) else value for value in _values(payloads)]
    return _compact(values[0] if len(values) == 1 else values)


def _summary(payloads: Payloads) -> str:
    text = _payload_json(payloads)
    return text if len(text) <= SUMMARY_LENGTH else text[: SUMMARY_LENGTH - 1] + "…"


def _failure(failure: Failure) -> str:
    kind = failure.application_failure_info.type
    return f"{kind}: {failure.message}" if kind else failure.message


def _field(payloads: Payloads, name: str) -> dict[str, Any]:
    """A field of an activity's one object argument ({} when the input has another shape)."""
    values = _values(payloads)
    found = values[0].get(name) if len(values) == 1 and isinstance(values[0], dict) else None
    return found if isinstance(found, dict) else {}


def _transition(payloads: Payloads) -> str:
    """record_transition carries a whole catalog transaction: its event says what happened."""
    event = _field(payloads, "event")
    if not event:
        return _summary(payloads)
    # Each lifecycle names its positions its own way: stage, status, state.
    before = next((event[k] for k in ("stage_before", "status_before", "state_before")
                   if k in event), None)
    after = next((event[k] for k in ("stage_after", "status_after", "state_after")
                  if k in event), None)
    verdict = "" if event.get("accepted") else f" refused: {event.get('reason')}"
    return (f"{event.get('command')} by {sender(event.get('actor'), event.get('claimed_actor'))}: "
            f"{before} -> {after}{verdict}")


def _marker(attributes: MarkerRecordedEventAttributes, labels: dict[int, str]) -> str:
    """A local activity (a catalog read, since the `local-catalog-reads` patch) or a patch."""
    details = attributes.details
    if attributes.marker_name == "core_patch" and "patch-data" in details:
        patch = _values(details["patch-data"])[0]
        return f"patch {patch.get('id')}" if isinstance(patch, dict) else "patch"
    if attributes.marker_name != "core_local_activity" or "data" not in details:
        return attributes.marker_name
    data = _values(details["data"])[0]
    data = data if isinstance(data, dict) else {}
    line = (f"local activity {data.get('activity_type')} #{data.get('activity_id')} "
            f"attempt {data.get('attempt')}")
    if attributes.HasField("failure"):
        return f"{line} failed: {_failure(attributes.failure)}"
    if "result" not in details:
        return line
    return f"{line} result={_summary(details['result'])}"


def _cell(payloads: Payloads) -> str:
    cell = _field(payloads, "cell")
    return "/".join(str(value) for value in cell.values()) if cell else _summary(payloads)


_INPUT_SUMMARIES: dict[str, Callable[[Payloads], str]] = {
    "record_transition": _transition,
    "record_service_transition": _transition,
    "record_channel_transition": _transition,
    "test_compatibility_cell": _cell,
}


def _activity_scheduled(a: Any, labels: dict[int, str]) -> str:
    summarize = _INPUT_SUMMARIES.get(a.activity_type.name, _summary)
    return f"{a.activity_type.name} #{a.activity_id} {summarize(a.input)}"


def _started_detail(a: Any, labels: dict[int, str]) -> str:
    origin = f" (continued as new from run {a.continued_execution_run_id})" if (
        a.continued_execution_run_id) else ""
    return f"{a.workflow_type.name} on {a.task_queue.name}{origin} input={_summary(a.input)}"


def _update_completed(a: Any, labels: dict[int, str]) -> str:
    name = labels.get(a.accepted_event_id, a.meta.update_id)
    if a.outcome.HasField("failure"):
        return f"{name} failed: {_failure(a.outcome.failure)}"
    return f"{name} result={_summary(a.outcome.success)}"


def _search_attributes(a: Any, labels: dict[int, str]) -> str:
    fields = a.search_attributes.indexed_fields
    return " ".join(f"{name}={_plain(_values([fields[name]])[0])}" for name in sorted(fields))


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else _compact(value)


Detail = Callable[[Any, dict[int, str]], str]

_DETAILS: dict[str, Detail] = {
    "WorkflowExecutionStarted": _started_detail,
    "WorkflowExecutionCompleted": lambda a, _: f"result={_summary(a.result)}",
    "WorkflowExecutionFailed": lambda a, _: f"failed: {_failure(a.failure)}",
    "WorkflowExecutionCancelRequested": lambda a, _: f"by {a.identity} {a.cause}".rstrip(),
    "WorkflowExecutionTerminated": lambda a, _: f"by {a.identity}: {a.reason}",
    "WorkflowExecutionContinuedAsNew": lambda a, _: f"next run {a.new_execution_run_id}",
    "WorkflowTaskFailed": lambda a, _: (
        f"{WorkflowTaskFailedCause.Name(a.cause).removeprefix('WORKFLOW_TASK_FAILED_CAUSE_')}: "
        f"{_failure(a.failure)}"
    ),
    "WorkflowTaskTimedOut": lambda a, _: TimeoutType.Name(a.timeout_type),
    "ActivityTaskScheduled": _activity_scheduled,
    "ActivityTaskStarted": lambda a, labels: (
        f"{labels.get(a.scheduled_event_id, '')} attempt {a.attempt}"
    ),
    "ActivityTaskCompleted": lambda a, labels: (
        f"{labels.get(a.scheduled_event_id, '')} result={_summary(a.result)}"
    ),
    "ActivityTaskFailed": lambda a, labels: (
        f"{labels.get(a.scheduled_event_id, '')} failed: {_failure(a.failure)}"
    ),
    "ActivityTaskTimedOut": lambda a, labels: (
        f"{labels.get(a.scheduled_event_id, '')} {_failure(a.failure)}"
    ),
    "ActivityTaskCancelRequested": lambda a, labels: labels.get(a.scheduled_event_id, ""),
    "ActivityTaskCanceled": lambda a, labels: labels.get(a.scheduled_event_id, ""),
    "MarkerRecorded": _marker,
    "TimerStarted": lambda a, _: f"timer {a.timer_id} for {a.start_to_fire_timeout.ToTimedelta()}",
    "TimerFired": lambda a, _: f"timer {a.timer_id}",
    "TimerCanceled": lambda a, _: f"timer {a.timer_id}",
    "WorkflowExecutionSignaled": lambda a, _: f"{a.signal_name} {_payload_json(a.input)}",
    "WorkflowExecutionUpdateAdmitted": lambda a, _: (
        f"{a.request.input.name} {_payload_json(a.request.input.args)}"
    ),
    "WorkflowExecutionUpdateAccepted": lambda a, _: (
        f"{a.accepted_request.input.name} {_payload_json(a.accepted_request.input.args)}"
    ),
    "WorkflowExecutionUpdateRejected": lambda a, _: (
        f"{a.rejected_request.input.name} {_payload_json(a.rejected_request.input.args)} "
        f"rejected: {_failure(a.failure)}"
    ),
    "WorkflowExecutionUpdateCompleted": _update_completed,
    "UpsertWorkflowSearchAttributes": _search_attributes,
}


# --- mpr replay ------------------------------------------------------------------------------


async def _replay(args: argparse.Namespace) -> None:
    settings = Settings.from_env()
    codec = payload_codec(settings)
    history = _load(args.file, args.workflow_id, codec)
    _check_keys(args.file, history, codec)
    replayer = Replayer(
        workflows=list(worker_workflows().values()),  # every workflow the worker runs
        # Without MPR_PAYLOAD_KEYS, a history of plain payloads replays all the same.
        data_converter=replay_data_converter(settings),
        # The SDK core would log the failing task to the console as well.
        runtime=Runtime(telemetry=TelemetryConfig(logging=None)),
    )
    with _quiet_sdk_logs():
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    failure = result.replay_failure
    if isinstance(failure, NondeterminismError):
        raise CliError(f"not deterministic: {_core_message(failure)}", FAILURE)
    if failure is not None:
        # The current code fails on this history in another way (it raised, for one).
        raise CliError(f"replay failed: {_core_message(failure)}", FAILURE)
    print(f"deterministic: {len(history.events)} events replayed")


def _core_message(error: Exception) -> str:
    """The failure's message, without the SDK core's debug dump (and stack trace) around it."""
    found = CORE_FAILURE_MESSAGE.search(str(error))
    return found.group(1) if found else str(error)


def _check_keys(path: Path, history: WorkflowHistory, codec: EncryptionCodec) -> None:
    """Every payload of the history can be read: one line naming the key that is missing,
    rather than the replay failing on the first payload it cannot decrypt."""
    for event in history.events:
        for payload in payloads_in(event):
            try:
                codec.decrypt(payload)
            except PayloadKeyError as error:
                raise CliError(f"cannot replay {path}: {error}", FAILURE) from None


def _load(path: Path, workflow_id: str | None, codec: EncryptionCodec) -> WorkflowHistory:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CliError(f"no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise CliError(f"cannot read {path}: {error}") from None
    except json.JSONDecodeError as error:
        raise CliError(f"{path} is not JSON ({error}): expected a workflow history") from None
    not_history = (f"{path} is not a workflow history (expected the output of "
                   "`temporal workflow show --output json` or `mpr history --json`)")
    if not isinstance(data, dict) or not data.get("events"):
        raise CliError(not_history)
    try:
        history = WorkflowHistory.from_json(PLACEHOLDER_WORKFLOW_ID, data)
    except (ParseError, AttributeError, TypeError, ValueError):
        raise CliError(not_history) from None
    started = history.events[0]
    if not started.HasField("workflow_execution_started_event_attributes"):
        raise CliError(f"{not_history}: it does not begin with WorkflowExecutionStarted")
    workflow_type = _started(started).workflow_type.name
    known = worker_workflows()
    if workflow_type not in known:
        raise CliError(f"{path} is a history of {workflow_type}, not {' or '.join(known)}")
    return WorkflowHistory(workflow_id or _recorded_workflow_id(started, codec), history.events)


def _release_id(start: Any) -> str:
    return release_id_of(StartInput.model_validate(_without_token(start)))


def _service_id(start: Any) -> str:
    request = ServiceStart.model_validate(_without_token(start))
    return mini_service_id(request.super_app, request.version_no)


def _without_token(start: Any) -> Any:
    """A start input as the workflow validates it: without the identity token it carried."""
    return split_token(start)[0] if isinstance(start, dict) else start


def _channel_id(start: Any) -> str:
    return ChannelStart.model_validate(_without_token(start)).key.workflow_id


# The workflow id each workflow type expects for its start input (each checks its own).
_WORKFLOW_IDS: dict[str, Callable[[Any], str]] = {
    release.WORKFLOW_TYPE: _release_id,
    mini_service.WORKFLOW_TYPE: _service_id,
    channel.WORKFLOW_TYPE: _channel_id,
}


def _recorded_workflow_id(started: HistoryEvent, codec: EncryptionCodec) -> str:
    """The workflow id matters: a release or mini service checks its own id against its
    input. Newer servers record it in the start event; otherwise it follows from the input."""
    attributes = _started(started)
    if attributes.workflow_id:
        return str(attributes.workflow_id)
    from_input = _WORKFLOW_IDS.get(attributes.workflow_type.name)
    try:
        start = _values(codec.decrypt_all(attributes.input.payloads))[0]
        return from_input(start) if from_input else PLACEHOLDER_WORKFLOW_ID
    except (ValidationError, IndexError, PayloadKeyError):
        return PLACEHOLDER_WORKFLOW_ID


@contextmanager
def _quiet_sdk_logs() -> Iterator[None]:
    """The SDK logs a failing workflow task with its traceback, and warns of what a failing
    workflow left unfinished; the verdict says it in one line. (A handler of its own keeps
    Python's last-resort handler from printing the records.)"""
    sdk = logging.getLogger("temporalio")
    silence = logging.NullHandler()
    propagate, sdk.propagate = sdk.propagate, False
    sdk.addHandler(silence)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        sdk.removeHandler(silence)
        sdk.propagate = propagate
