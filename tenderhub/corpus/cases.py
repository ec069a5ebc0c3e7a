"""The corpus as data: one `Case` per hostile input, how it is sent (outbox, data topic) and what must become of it.

Each case is sent once per way it names. Ids are the run's own (`CaseIds`), so a dead-lettered case can be looked for
in every store afterwards: finding its id there is a harmful write.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from schema.events import (
    BUYER_MAX_CHARS,
    COMPANY_NAME_MAX_CHARS,
    DETAILS_MAX_BYTES,
    PROVINCE_MAX_CHARS,
    PROVINCES_MAX_ITEMS,
    SECTOR_MAX_CHARS,
    SECTORS_MAX_ITEMS,
)
from schema.topics import DATA_MAX_MESSAGE_BYTES


class Way(StrEnum):
    OUTBOX = "outbox"  # a row in integration_outbox, as the application account writes it
    TOPIC = "topic"  # a record produced straight onto a data topic, past the relay


class Outcome(StrEnum):
    DLQ = "dlq"  # a dead letter (relay's or worker's) whose reason holds `Expect.reason`
    STORED = "stored-harmlessly"  # processed; `Expect.stored` says what must be true
    REFUSED = "refused-at-source"  # the write itself fails (MySQL's JSON check, the broker's size limit)


class Stored(StrEnum):
    """What a stored case must have left behind (checked by the runner)."""

    ACTIVITY_LOGGED = "activity log entry with the event's id"
    TENDER_SUMMARISED = "summary document for the tender"
    COMPANY_KNOWN = "readiness facts of the team's company"
    NOTHING = "no document and no dead letter: the agents ignore it"


@dataclass(frozen=True)
class Expect:
    outcome: Outcome
    reason: str = ""  # substring of every dead letter's reason, or of the refusal
    stored: Stored | None = None

    def text(self) -> str:
        if self.outcome is Outcome.STORED:
            return f"stored ({self.stored.value if self.stored else '?'})"
        return f"{self.outcome.value}: {self.reason}"


def dlq(reason: str) -> Expect:
    return Expect(Outcome.DLQ, reason)


def stored(what: Stored) -> Expect:
    return Expect(Outcome.STORED, stored=what)


def refused(reason: str) -> Expect:
    return Expect(Outcome.REFUSED, reason)


@dataclass(frozen=True)
class CaseIds:
    """The ids one send of one case uses: `entity` is the aggregate's id (tender, user or team), `marker` names the
    run and case in the payload so its documents can be told from anyone else's."""

    entity: int
    marker: str


PayloadFn = Callable[[CaseIds], str]
EnvelopeFn = Callable[[CaseIds, dict[str, Any]], dict[str, Any]]
RawFn = Callable[[CaseIds], bytes | None]


@dataclass(frozen=True)
class Case:
    id: str
    group: str
    description: str
    payload: PayloadFn
    outbox: Expect | None
    topic: Expect | None
    event_type: str = "user.activity"
    aggregate_type: str | None = None  # None: the event type's own
    aggregate_id: Callable[[CaseIds], str] | None = None  # None: str(ids.entity)
    schema_version: int = 1
    # Topic way only: change the envelope the relay would have written (forged fields), or send these exact bytes.
    envelope: EnvelopeFn | None = None
    raw: RawFn | None = None
    topic_of: str | None = None  # topic way: the aggregate type whose topic receives it (None: aggregate_type)
    tags: tuple[str, ...] = field(default_factory=tuple)

    def expect(self, way: Way) -> Expect | None:
        return self.outbox if way is Way.OUTBOX else self.topic


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# --- valid payloads the cases start from ----------------------------------------------------------------------------


def activity(ids: CaseIds, **fields: Any) -> dict[str, Any]:
    details = {"corpus": ids.marker} | fields.pop("details", {})
    return {"user_id": ids.entity, "team_id": 1, "action": "tender.viewed", "details": details} | fields


def tender(ids: CaseIds, **fields: Any) -> dict[str, Any]:
    return {
        "tender_id": ids.entity,
        "ocid": f"ocds-corpus-{ids.entity}",
        "title": f"Corpus {ids.marker}: supply of road signs",
        "buyer": "Department of Corpus Testing",
        "budget": "125000.00",
        "currency": "ZAR",
        "status": "active",
        "published_at": "2026-01-02T08:00:00Z",
        "closing_at": "2026-02-27T11:00:00Z",
        "province": "Gauteng",
        "category": "Services: General",
        "description": "Supply and installation of road signs. CIDB grade 3SB or higher.",
    } | fields


def company(ids: CaseIds, **fields: Any) -> dict[str, Any]:
    return {
        "team_id": ids.entity,
        "company_id": ids.entity,
        "company_name": f"Corpus {ids.marker} (Pty) Ltd",
        "sectors": ["Construction"],
        "provinces": ["Gauteng"],
        "experience_years": 5,
        "bbbee_level": 2,
        "cidb": [{"class_of_works": "CE", "grade": 3}],
    } | fields


def act(**fields: Any) -> PayloadFn:
    return lambda ids: dumps(activity(ids, **fields))


def ten(**fields: Any) -> PayloadFn:
    return lambda ids: dumps(tender(ids, **fields))


def com(**fields: Any) -> PayloadFn:
    return lambda ids: dumps(company(ids, **fields))


def text(value: str) -> PayloadFn:
    return lambda ids: value


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = {"n": value}
    return value


def envelope_set(**fields: Any) -> EnvelopeFn:
    return lambda ids, env: env | fields


def envelope_drop(name: str) -> EnvelopeFn:
    return lambda ids, env: {k: v for k, v in env.items() if k != name}


def fixed_id(value: str) -> Callable[[CaseIds], str]:
    return lambda ids: value


# The data topics take DATA_MAX_MESSAGE_BYTES per record batch: "near" leaves room for the envelope, key, headers
# and framing (the relay keeps RECORD_OVERHEAD = 4 KiB); "over" is past it whatever the framing.
NEAR_LIMIT_PAD = DATA_MAX_MESSAGE_BYTES - 12 * 1024
OVER_LIMIT_PAD = DATA_MAX_MESSAGE_BYTES + 64 * 1024

NOT_JSON = "not JSON"
BREAKS = "payload breaks"
MYSQL_JSON_CHECK = "CONSTRAINT"  # MariaDB's JSON column is LONGTEXT CHECK (json_valid(payload))
OPERATOR = "operator injection"
NOT_FINITE = "a number JSON cannot carry"  # the contract's refusal of infinity and NaN
NUL_TEXT = "NUL character in a string"  # the MongoDB sink's refusal (no backend may be asked to store one)
DOTTED = "must not contain '.'"
# The id a mismatch case names instead of its own: no case's aggregate (sending.STRIDE apart, ways at +0 and +1).
MISMATCH = 5


def _truncated(ids: CaseIds) -> str:
    return dumps(activity(ids))[:-9]


def _huge_digits(ids: CaseIds) -> str:
    return dumps(activity(ids)).replace('"team_id":1', '"team_id":' + "9" * 5000)


def _duplicate_user(ids: CaseIds) -> str:
    # The first user_id matches the aggregate id; JSON parsers keep the last one, which does not.
    body = dumps({k: v for k, v in activity(ids).items() if k != "user_id"})
    return f'{{"user_id":{ids.entity},"user_id":{ids.entity + MISMATCH},' + body[1:]


def _lone_surrogate(where: str) -> PayloadFn:
    # As a producer's JSON encoder writes it: the escape is valid JSON text, the character it names is not Unicode.
    def build(ids: CaseIds) -> str:
        body = dumps(activity(ids, details={"q": "SURROGATE"} if where == "value" else {"SURROGATE": 1}))
        return body.replace("SURROGATE", "a\\ud800b")

    return build


def _deep_arrays(ids: CaseIds) -> str:
    return dumps(activity(ids)).replace('"details":{', '"deep":' + "[" * 100_000 + "]" * 100_000 + ',"details":{')


CASES: tuple[Case, ...] = (
    # --- malformed and truncated JSON ---------------------------------------------------------------------------
    Case("json-truncated", "json", "payload cut off mid-object", _truncated, refused(MYSQL_JSON_CHECK), dlq(NOT_JSON)),
    Case(
        "json-garbage",
        "json",
        "payload is not JSON at all",
        text("<html>502 Bad Gateway</html>"),
        refused(MYSQL_JSON_CHECK),
        dlq(NOT_JSON),
    ),
    Case("json-empty", "json", "empty payload text", text(""), refused(MYSQL_JSON_CHECK), dlq(NOT_JSON)),
    Case(
        "json-nan",
        "json",
        "NaN and Infinity (Python's json writes them)",
        lambda ids: dumps(activity(ids)).replace('"team_id":1', '"team_id":NaN,"x":Infinity'),
        refused(MYSQL_JSON_CHECK),
        dlq(NOT_JSON),
    ),
    Case(
        "json-trailing-garbage",
        "json",
        "a valid object followed by garbage",
        lambda ids: dumps(activity(ids)) + "}{",
        refused(MYSQL_JSON_CHECK),
        dlq(NOT_JSON),
    ),
    Case(
        "json-array",
        "json",
        "payload is a JSON array",
        text("[1,2,3]"),
        dlq(BREAKS),
        dlq("payload must be a JSON object"),
    ),
    Case(
        "json-scalar",
        "json",
        "payload is a JSON string",
        text('"tender.viewed"'),
        dlq(BREAKS),
        dlq("payload must be a JSON object"),
    ),
    Case(
        "json-duplicate-keys",
        "json",
        "user_id twice: the first matches the aggregate id, the last does not",
        _duplicate_user,
        dlq("does not match"),
        dlq("does not match"),
    ),
    Case(
        "json-bad-utf8",
        "json",
        "record value is not UTF-8",
        act(),
        None,
        dlq(NOT_JSON),
        raw=lambda ids: b'{"event_id":1,"payload":"\xff\xfe\xc3\x28"}',
    ),
    Case(
        "json-tombstone",
        "json",
        "a null record value (tombstone) on an event topic",
        act(),
        None,
        dlq("tombstone"),
        raw=lambda ids: None,
    ),
    Case(
        "json-envelope-truncated",
        "json",
        "the whole record value cut in half",
        act(),
        None,
        dlq(NOT_JSON),
        raw=lambda ids: json.dumps({"event_id": 1, "payload": activity(ids)}).encode()[:40],
    ),
    # --- wrong types ----------------------------------------------------------------------------------------------
    Case(
        "type-id-string",
        "types",
        'user_id "5" (a string where the contract says integer)',
        lambda ids: dumps(activity(ids) | {"user_id": str(ids.entity)}),
        dlq("user_id"),
        dlq("user_id"),
    ),
    Case("type-id-bool", "types", "team_id true", act(team_id=True), dlq("team_id"), dlq("team_id")),
    Case("type-id-float", "types", "team_id 1.5", act(team_id=1.5), dlq("team_id"), dlq("team_id")),
    Case(
        "type-details-list",
        "types",
        "details is a list",
        lambda ids: dumps(activity(ids) | {"details": ["a"]}),
        dlq("details"),
        dlq("details"),
    ),
    Case(
        "type-title-number",
        "types",
        "tender title is a number",
        ten(title=42),
        dlq("title"),
        dlq("title"),
        event_type="tender.created",
    ),
    Case(
        "type-budget-text",
        "types",
        "budget is a word",
        ten(budget="lots"),
        dlq("budget"),
        dlq("budget"),
        event_type="tender.created",
    ),
    Case(
        "type-status-unknown",
        "types",
        "status outside the contract's list",
        ten(status="hacked"),
        dlq("status"),
        dlq("status"),
        event_type="tender.created",
    ),
    Case(
        "type-cidb-grade-text",
        "types",
        "company CIDB grade as text",
        com(cidb=[{"class_of_works": "CE", "grade": "9"}]),
        dlq("cidb"),
        dlq("cidb"),
        event_type="company.updated",
    ),
    # --- missing and extra fields ---------------------------------------------------------------------------------
    Case(
        "missing-action",
        "fields",
        "user.activity without action",
        lambda ids: dumps({k: v for k, v in activity(ids).items() if k != "action"}),
        dlq("action"),
        dlq("action"),
    ),
    Case(
        "missing-title",
        "fields",
        "tender.created without title",
        lambda ids: dumps({k: v for k, v in tender(ids).items() if k != "title"}),
        dlq("title"),
        dlq("title"),
        event_type="tender.created",
    ),
    Case("missing-everything", "fields", "empty payload object", text("{}"), dlq(BREAKS), dlq(BREAKS)),
    Case(
        "missing-envelope-field",
        "fields",
        "envelope without source_seq",
        act(),
        None,
        dlq("envelope lacks"),
        envelope=envelope_drop("source_seq"),
    ),
    Case(
        "extra-payload-fields",
        "fields",
        "unknown payload fields, one holding an operator document",
        act(unknown="x" * 1000, also={"$where": "sleep(1000)"}),
        stored(Stored.ACTIVITY_LOGGED),
        stored(Stored.ACTIVITY_LOGGED),
    ),
    Case(
        "extra-envelope-fields",
        "fields",
        "unknown envelope fields (an operator document among them)",
        act(),
        None,
        stored(Stored.ACTIVITY_LOGGED),
        envelope=envelope_set(injected={"$set": {"admin": True}}, x=1),
    ),
    # --- oversized values -----------------------------------------------------------------------------------------
    Case(
        "size-details-over-16k",
        "size",
        "details of 20 KiB (the contract keeps 16 KiB)",
        act(details={"q": "x" * (DETAILS_MAX_BYTES + 4096)}),
        dlq("bytes of JSON"),
        dlq("bytes of JSON"),
    ),
    Case(
        "size-title-over-max",
        "size",
        "tender title of 1,001 characters",
        ten(title="T" * 1001),
        dlq("title"),
        dlq("title"),
        event_type="tender.created",
    ),
    Case(
        "size-near-limit",
        "size",
        "an unknown field that brings the event just under the 1 MiB topic limit",
        act(pad="p" * (NEAR_LIMIT_PAD - 600)),
        stored(Stored.ACTIVITY_LOGGED),
        stored(Stored.ACTIVITY_LOGGED),
    ),
    Case(
        "size-near-limit-contract-break",
        "size",
        'just under the topic limit and team_id "x"',
        act(team_id="x", pad="p" * (NEAR_LIMIT_PAD - 600)),
        dlq("team_id"),
        dlq("team_id"),
    ),
    Case(
        "size-over-limit",
        "size",
        "an unknown field that takes the event past the 1 MiB topic limit",
        act(pad="p" * OVER_LIMIT_PAD),
        dlq("oversized"),
        refused("MessageSizeTooLarge"),
    ),
    Case(
        "size-texts-at-max",
        "size",
        "every tender text field at its maximum",
        ten(
            title="T" * 1000,
            buyer="B" * BUYER_MAX_CHARS,
            description="d " * 10_000,
            special_conditions="s " * 25_000,
            tender_number="N" * 255,
            briefing_venue="v" * 1000,
        ),
        stored(Stored.TENDER_SUMMARISED),
        stored(Stored.TENDER_SUMMARISED),
        event_type="tender.created",
    ),
    # --- deep nesting ---------------------------------------------------------------------------------------------
    Case(
        "deep-details-9",
        "nesting",
        "details nested 9 levels (the contract allows 8)",
        act(details={"d": nested(9)}),
        dlq("nests deeper"),
        dlq("nests deeper"),
    ),
    Case(
        "deep-extra-30",
        "nesting",
        "an unknown field nested 30 levels",
        act(extra=nested(30)),
        stored(Stored.ACTIVITY_LOGGED),
        stored(Stored.ACTIVITY_LOGGED),
    ),
    Case(
        "deep-100k-arrays",
        "nesting",
        "an unknown field of 100,000 nested arrays",
        _deep_arrays,
        refused(MYSQL_JSON_CHECK),
        dlq("nests too deeply"),
    ),
    Case(
        "num-overflow-to-infinity",
        "json",
        "numbers past a double's range in details (1e400 and a 400-digit integer with a fraction parse as infinity)",
        lambda ids: (
            dumps(activity(ids, details={"a": "BIG", "b": "LONG"}))
            .replace('"BIG"', "1e400")
            .replace('"LONG"', "1" + "0" * 400 + ".5")
        ),
        dlq(NOT_FINITE),
        dlq(NOT_FINITE),
    ),
    # --- odd Unicode ----------------------------------------------------------------------------------------------
    Case(
        "uni-nul-in-action",
        "unicode",
        "NUL inside the action",
        act(action="tender\u0000viewed"),
        dlq("action"),
        dlq("action"),
    ),
    Case(
        "uni-nul-in-details-value",
        "unicode",
        "NUL inside a details value",
        act(details={"q": "a\u0000b"}),
        dlq(NUL_TEXT),
        dlq(NUL_TEXT),
    ),
    Case(
        "uni-nul-in-details-key",
        "unicode",
        "NUL inside a details key",
        act(details={"a\u0000b": 1}),
        dlq(OPERATOR),
        dlq(OPERATOR),
    ),
    Case(
        "uni-lone-surrogate-value",
        "unicode",
        "a lone surrogate (escaped) in a details value",
        _lone_surrogate("value"),
        refused(MYSQL_JSON_CHECK),
        dlq(BREAKS),
    ),
    Case(
        "uni-lone-surrogate-key",
        "unicode",
        "a lone surrogate (escaped) in a details key",
        _lone_surrogate("key"),
        refused(MYSQL_JSON_CHECK),
        dlq(BREAKS),
    ),
    Case(
        "uni-lone-surrogate-occurred-at",
        "unicode",
        "a lone surrogate in the envelope's occurred_at",
        act(),
        None,
        dlq("occurred_at"),
        envelope=envelope_set(occurred_at="2026-01-05\ud800"),
    ),
    Case(
        "uni-rtl-override",
        "unicode",
        "right-to-left override and isolates in buyer and title",
        ten(buyer="\u202eyrtsiniM\u202c \u2067evil\u2069", title="\u202egnp.exe Road signs"),
        stored(Stored.TENDER_SUMMARISED),
        stored(Stored.TENDER_SUMMARISED),
        event_type="tender.created",
    ),
    Case(
        "uni-nul-in-tender-texts",
        "unicode",
        "NUL inside the title, buyer and description of a tender",
        ten(title="Road\u0000signs", buyer="City\u0000of Tshwane", description="Supply of\u0000road signs"),
        stored(Stored.TENDER_SUMMARISED),
        stored(Stored.TENDER_SUMMARISED),
        event_type="tender.created",
    ),
    Case(
        "uni-nul-in-company-profile",
        "unicode",
        "NUL inside a company's name, sector label and province (the checklist quotes the label)",
        com(company_name="Corpus\u0000 Ltd", sectors=["Construction\u0000"], provinces=["Gau\u0000teng"]),
        stored(Stored.COMPANY_KNOWN),
        stored(Stored.COMPANY_KNOWN),
        event_type="company.updated",
    ),
    Case(
        "uni-case-twin-number-word",
        "unicode",
        "experience years written with non-ASCII case twins of the number words (dotted I, long s)",
        ten(description="Contractor with F\u0130VE years of experience; \u017fix years for the site agent"),
        stored(Stored.TENDER_SUMMARISED),
        stored(Stored.TENDER_SUMMARISED),
        event_type="tender.created",
    ),
    Case(
        "uni-lone-surrogate-long-event-type",
        "unicode",
        "a lone surrogate (escaped) in the event type, past its 200th character (the reason quotes it)",
        act(),
        None,
        dlq("payload breaks"),
        raw=lambda ids: (
            b'{"event_id":1,"event_type":"'
            + b"x" * 200
            + b'\\ud800","aggregate_type":"activity","aggregate_id":"'
            + str(ids.entity).encode()
            + b'","occurred_at":"2026-01-05T10:00:00Z","schema_version":1,"source_seq":1,"payload":{}}'
        ),
    ),
    Case(
        "uni-combining-marks",
        "unicode",
        "a title of one letter and 999 combining marks",
        ten(title="Z" + "\u0301" * 999),
        stored(Stored.TENDER_SUMMARISED),
        stored(Stored.TENDER_SUMMARISED),
        event_type="tender.created",
    ),
    Case(
        "uni-4-byte",
        "unicode",
        "4-byte characters (emoji, mathematical letters) in texts and details",
        ten(
            title="\U0001d54b\U0001d556\U0001d55f\U0001d555\U0001d556\U0001d563 \U0001f6a7" * 50,
            description="\U0001f4a9" * 5000,
        ),
        stored(Stored.TENDER_SUMMARISED),
        stored(Stored.TENDER_SUMMARISED),
        event_type="tender.created",
    ),
    Case(
        "uni-bom-id",
        "unicode",
        "aggregate id with a byte-order mark",
        act(),
        dlq("aggregate_id"),
        dlq("aggregate_id"),
        aggregate_id=lambda ids: f"\ufeff{ids.entity}",
    ),
    Case(
        "uni-arabic-digits-id",
        "unicode",
        "aggregate id in Arabic-Indic digits",
        act(),
        dlq("aggregate_id"),
        dlq("aggregate_id"),
        aggregate_id=fixed_id("\u0667\u0660"),
    ),
    # --- operator and dotted keys ---------------------------------------------------------------------------------
    Case(
        "op-where",
        "operators",
        "details {$where: ...}",
        act(details={"$where": "sleep(1000)"}),
        dlq(OPERATOR),
        dlq(OPERATOR),
    ),
    Case(
        "op-nested-gt",
        "operators",
        "details {a: {$gt: ''}}",
        act(details={"a": {"$gt": ""}}),
        dlq(OPERATOR),
        dlq(OPERATOR),
    ),
    Case(
        "op-in-array",
        "operators",
        "details {l: [{$set: ...}]}",
        act(details={"l": [{"$set": {"x": 1}}]}),
        dlq(OPERATOR),
        dlq(OPERATOR),
    ),
    Case(
        "op-dotted-key",
        "operators",
        "details {a.b: 1}: the contract takes it; the stack's store (FerretDB) refuses dotted keys, so the log's "
        "agent dead-letters it (MongoDB 5+ would store it as a plain field name)",
        act(details={"a.b": 1, "x.$": 2}),
        dlq(DOTTED),
        dlq(DOTTED),
    ),
    Case(
        "op-id-key",
        "operators",
        "details {_id: ...}: the log's own _id stays the event id",
        act(details={"_id": 1}),
        stored(Stored.ACTIVITY_LOGGED),
        stored(Stored.ACTIVITY_LOGGED),
    ),
    Case(
        "op-tender-extra-operator",
        "operators",
        "tender with an unknown field {$set: {...}}",
        ten(**{"$set": {"status": "cancelled"}}),
        stored(Stored.TENDER_SUMMARISED),
        stored(Stored.TENDER_SUMMARISED),
        event_type="tender.created",
    ),
    # --- ids that try to inject into Redis keys -------------------------------------------------------------------
    Case(
        "key-id-star",
        "redis-keys",
        "aggregate id 1:* (a key pattern)",
        ten(),
        dlq("aggregate_id"),
        dlq("aggregate_id"),
        event_type="tender.created",
        aggregate_id=fixed_id("1:*"),
    ),
    Case(
        "key-id-space",
        "redis-keys",
        "aggregate id '1 2'",
        ten(),
        dlq("aggregate_id"),
        dlq("aggregate_id"),
        event_type="tender.created",
        aggregate_id=fixed_id("1 2"),
    ),
    Case(
        "key-id-crlf",
        "redis-keys",
        "aggregate id with CRLF and a command",
        ten(),
        dlq("aggregate_id"),
        dlq("aggregate_id"),
        event_type="tender.created",
        aggregate_id=fixed_id("1\r\nFLUSHALL\r\n"),
    ),
    Case(
        "key-id-braces",
        "redis-keys",
        "aggregate id with a hash tag {x}",
        com(),
        dlq("aggregate_id"),
        dlq("aggregate_id"),
        event_type="company.updated",
        aggregate_id=fixed_id("{x}1"),
    ),
    Case(
        "key-id-mismatch",
        "redis-keys",
        "aggregate id and payload tender_id differ",
        ten(),
        dlq("does not match"),
        dlq("does not match"),
        event_type="tender.created",
        aggregate_id=lambda ids: str(ids.entity + MISMATCH),
    ),
    Case(
        "key-id-leading-zero",
        "redis-keys",
        "aggregate id 007",
        act(),
        dlq("aggregate_id"),
        dlq("aggregate_id"),
        aggregate_id=lambda ids: f"00{ids.entity}",
    ),
    # --- ids and numbers past 64 bits -----------------------------------------------------------------------------
    Case(
        "num-id-2-63",
        "numbers",
        "team_id 2^63 (one past the contract)",
        act(team_id=2**63),
        dlq("team_id"),
        dlq("team_id"),
    ),
    Case(
        "num-id-2-64",
        "numbers",
        "aggregate id of 20 digits",
        act(),
        dlq("aggregate_id"),
        dlq("aggregate_id"),
        aggregate_id=fixed_id(str(2**64 + 7)),
    ),
    Case("num-id-zero", "numbers", "team_id 0", act(team_id=0), dlq("team_id"), dlq("team_id")),
    Case("num-id-negative", "numbers", "team_id -1", act(team_id=-1), dlq("team_id"), dlq("team_id")),
    Case(
        "num-5000-digits",
        "numbers",
        "team_id of 5,000 digits (past Python's int parsing limit)",
        _huge_digits,
        dlq("number out of range"),
        dlq(NOT_JSON),
    ),
    Case(
        "num-budget-over",
        "numbers",
        "budget 10^13 (the contract stops at 10^12)",
        ten(budget=10**13),
        dlq("budget"),
        dlq("budget"),
        event_type="tender.created",
    ),
    Case(
        "num-budget-1e309",
        "numbers",
        "budget 1e309 (infinite as a double)",
        lambda ids: dumps(tender(ids)).replace('"budget":"125000.00"', '"budget":1e309'),
        dlq("budget"),
        dlq("budget"),
        event_type="tender.created",
    ),
    Case(
        "num-envelope-event-id-2-64",
        "numbers",
        "envelope event_id 2^64",
        act(),
        None,
        dlq("event_id"),
        envelope=envelope_set(event_id=2**64),
    ),
    Case(
        "num-envelope-version-huge",
        "numbers",
        "envelope schema_version 2^63",
        act(),
        None,
        dlq("schema_version"),
        envelope=envelope_set(schema_version=2**63),
    ),
    # --- dates at the edges of the calendar -----------------------------------------------------------------------
    Case(
        "date-year-1",
        "dates",
        "published_at 0001-01-01",
        ten(published_at="0001-01-01T00:00:00"),
        dlq("published_at"),
        dlq("published_at"),
        event_type="tender.created",
    ),
    Case(
        "date-year-9999-offset",
        "dates",
        "closing_at 9999-12-31T23:59:59-14:00 (past year 9999 in UTC)",
        ten(closing_at="9999-12-31T23:59:59-14:00"),
        dlq("closing_at"),
        dlq("closing_at"),
        event_type="tender.created",
    ),
    Case(
        "date-1899",
        "dates",
        "published_at one second before 1900",
        ten(published_at="1899-12-31T23:59:59Z"),
        dlq("published_at"),
        dlq("published_at"),
        event_type="tender.created",
    ),
    Case(
        "date-edges-inside",
        "dates",
        "published 1900-01-01T00:00Z, closing 2199-12-31T23:59:59Z (inside)",
        ten(published_at="1900-01-01T00:00:00Z", closing_at="2199-12-31T23:59:59Z"),
        stored(Stored.TENDER_SUMMARISED),
        stored(Stored.TENDER_SUMMARISED),
        event_type="tender.created",
    ),
    Case(
        "date-feb-30",
        "dates",
        "closing_at 2026-02-30",
        ten(closing_at="2026-02-30T10:00:00Z"),
        dlq("closing_at"),
        dlq("closing_at"),
        event_type="tender.created",
    ),
    Case(
        "date-leap-second",
        "dates",
        "briefing_at 2016-12-31T23:59:60Z",
        ten(briefing_at="2016-12-31T23:59:60Z"),
        dlq("briefing_at"),
        dlq("briefing_at"),
        event_type="tender.created",
    ),
    Case(
        "date-occurred-at-year-0",
        "dates",
        "envelope occurred_at 0001-01-01T00:00+02:00 (year 0 in UTC)",
        act(),
        None,
        stored(Stored.ACTIVITY_LOGGED),
        envelope=envelope_set(occurred_at="0001-01-01T00:00:00+02:00"),
    ),
    Case(
        "date-occurred-at-text",
        "dates",
        "envelope occurred_at 'yesterday'",
        act(),
        None,
        dlq("occurred_at"),
        envelope=envelope_set(occurred_at="yesterday"),
    ),
    # --- unknown types and versions -------------------------------------------------------------------------------
    Case(
        "unknown-event-type",
        "types-versions",
        "event type tender.deleted",
        ten(),
        dlq("unknown event type"),
        dlq("unknown event type"),
        event_type="tender.deleted",
        aggregate_type="tender",
    ),
    Case(
        "unknown-version-2",
        "types-versions",
        "schema_version 2 of user.activity",
        act(),
        dlq("unknown schema_version"),
        dlq("unknown schema_version"),
        schema_version=2,
    ),
    Case(
        "unknown-version-0",
        "types-versions",
        "schema_version 0: a version the contract does not know, both ways",
        act(),
        dlq("unknown schema_version"),
        dlq("unknown schema_version"),
        schema_version=0,
    ),
    Case(
        "unknown-aggregate-type",
        "types-versions",
        "tender.created under aggregate 'activity' (on its topic)",
        ten(),
        dlq("belongs to aggregate"),
        dlq("belongs to aggregate"),
        event_type="tender.created",
        aggregate_type="activity",
    ),
    Case(
        "heartbeat-on-activity-topic",
        "types-versions",
        "a valid system.heartbeat on the activity topic",
        lambda ids: dumps({"origin": "corpus", "marker": ids.marker}),
        None,
        stored(Stored.NOTHING),
        event_type="system.heartbeat",
        aggregate_type="system",
        topic_of="activity",
    ),
    # --- forged envelope fields (the topic way: no relay sets them) -----------------------------------------------
    Case(
        "forge-seq-max",
        "forged",
        "tender with source_seq 2^63-1: only that tender is pinned",
        ten(),
        None,
        stored(Stored.TENDER_SUMMARISED),
        event_type="tender.created",
        envelope=envelope_set(source_seq=2**63 - 1),
    ),
    Case(
        "forge-seq-negative",
        "forged",
        "source_seq -1",
        act(),
        None,
        dlq("source_seq"),
        envelope=envelope_set(source_seq=-1),
    ),
    Case(
        "forge-seq-past-64",
        "forged",
        "source_seq 2^64",
        ten(),
        None,
        dlq("source_seq"),
        event_type="tender.created",
        envelope=envelope_set(source_seq=2**64),
    ),
    Case(
        "forge-seq-float",
        "forged",
        "source_seq 1.5",
        act(),
        None,
        dlq("source_seq"),
        envelope=envelope_set(source_seq=1.5),
    ),
    Case(
        "forge-aggregate-id",
        "forged",
        "envelope aggregate_id of another tender than the payload's",
        ten(),
        None,
        dlq("does not match"),
        event_type="tender.created",
        envelope=lambda ids, env: env | {"aggregate_id": str(ids.entity + MISMATCH)},
    ),
    Case(
        "forge-event-id-bool",
        "forged",
        "event_id true",
        act(),
        None,
        dlq("event_id"),
        envelope=envelope_set(event_id=True),
    ),
    Case(
        "forge-payload-null",
        "forged",
        "payload null",
        act(),
        None,
        dlq("payload must be a JSON object"),
        envelope=envelope_set(payload=None),
    ),
    # --- hostile text for every parser ----------------------------------------------------------------------------
    Case(
        "text-dots",
        "hostile-text",
        "description and conditions of dots at their maximum",
        ten(description="." * 20_000, special_conditions="." * 50_000),
        stored(Stored.TENDER_SUMMARISED),
        stored(Stored.TENDER_SUMMARISED),
        event_type="tender.created",
    ),
    Case(
        "text-spaces",
        "hostile-text",
        "texts of spaces and tabs at their maximum",
        ten(description=" \t" * 10_000, special_conditions=" " * 50_000, briefing_venue=" " * 1000),
        stored(Stored.TENDER_SUMMARISED),
        stored(Stored.TENDER_SUMMARISED),
        event_type="tender.created",
    ),
    Case(
        "text-digits",
        "hostile-text",
        "texts of digits at their maximum (amounts, grades, dates)",
        ten(description="1" * 20_000, special_conditions="9" * 50_000, tender_number="0" * 255),
        stored(Stored.TENDER_SUMMARISED),
        stored(Stored.TENDER_SUMMARISED),
        event_type="tender.created",
    ),
    Case(
        "text-grade-grade",
        "hostile-text",
        "'grade grade grade ...' and 'CIDB 9 CE PE' runs at the maximum",
        ten(description="grade " * 3333, special_conditions="CIDB 9 CE PE " * 3846),
        stored(Stored.TENDER_SUMMARISED),
        stored(Stored.TENDER_SUMMARISED),
        event_type="tender.created",
    ),
    Case(
        "text-parens",
        "hostile-text",
        "nested parentheses at the maximum",
        ten(description="(" * 10_000 + ")" * 10_000, special_conditions="([{" * 16_666),
        stored(Stored.TENDER_SUMMARISED),
        stored(Stored.TENDER_SUMMARISED),
        event_type="tender.created",
    ),
    Case(
        "text-dates-money",
        "hostile-text",
        "runs that look like dates, times and amounts",
        ten(description="01/01/01 10:00 R1,000,000.00 " * 689, briefing_venue="@ " * 500),
        stored(Stored.TENDER_SUMMARISED),
        stored(Stored.TENDER_SUMMARISED),
        event_type="tender.created",
    ),
    Case(
        "text-company-profile",
        "hostile-text",
        "company profile with every list and text at its maximum (real province names)",
        com(
            company_name="." * COMPANY_NAME_MAX_CHARS,
            sectors=["grade " * (SECTOR_MAX_CHARS // 6)] * SECTORS_MAX_ITEMS,
            provinces=["Gauteng"] * PROVINCES_MAX_ITEMS,
        ),
        stored(Stored.COMPANY_KNOWN),
        stored(Stored.COMPANY_KNOWN),
        event_type="company.updated",
    ),
    Case(
        "text-company-unknown-province",
        "hostile-text",
        "company profile whose provinces are 64 parentheses each: readiness cannot score it",
        com(provinces=["(" * PROVINCE_MAX_CHARS] * PROVINCES_MAX_ITEMS),
        dlq("unknown province"),
        dlq("unknown province"),
        event_type="company.updated",
    ),
    Case(
        "text-close-reason",
        "hostile-text",
        "tender.closed of a tender never created, reason of 1,000 parentheses: a closed stub, stored verbatim",
        lambda ids: dumps({"tender_id": ids.entity, "status": "cancelled", "reason": "(" * 1000}),
        stored(Stored.TENDER_SUMMARISED),
        stored(Stored.TENDER_SUMMARISED),
        event_type="tender.closed",
    ),
)
