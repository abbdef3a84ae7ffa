"""The RDS events an Aurora cluster emits for what the emulator does, with Aurora's source types, categories and
messages (Amazon Aurora User Guide, "Amazon RDS event categories and event messages for Aurora":
https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/USER_Events.Messages.html).

``DescribeEvents`` returns no event id (the RDS ``Event`` shape has SourceIdentifier, SourceType, Message,
EventCategories, Date, SourceArn); the id is how the catalogue names the message, and it is kept here so the
emulator's log and tests can name the event they mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone


@dataclass(frozen=True)
class EventType:
    event_id: str
    source_type: str  # db-cluster | db-instance | db-cluster-snapshot
    category: str
    message: str  # {name} is the instance, cluster or snapshot the message names


CATALOGUE: dict[str, EventType] = {
    e.event_id: e
    for e in (
        EventType("RDS-EVENT-0170", "db-cluster", "creation", "DB cluster created."),
        EventType("RDS-EVENT-0171", "db-cluster", "deletion", "DB cluster deleted."),
        EventType(
            "RDS-EVENT-0069",
            "db-cluster",
            "failover",
            "Cluster failover failed, check the health of your cluster instances and try again.",
        ),
        EventType("RDS-EVENT-0070", "db-cluster", "failover", "Promoting previous primary again: {name}."),
        EventType("RDS-EVENT-0071", "db-cluster", "failover", "Completed failover to DB instance: {name}."),
        EventType("RDS-EVENT-0072", "db-cluster", "failover", "Started same AZ failover to DB instance: {name}."),
        EventType("RDS-EVENT-0073", "db-cluster", "failover", "Started cross AZ failover to DB instance: {name}."),
        EventType("RDS-EVENT-0150", "db-cluster", "notification", "DB cluster stopped."),
        EventType("RDS-EVENT-0151", "db-cluster", "notification", "DB cluster started."),
        EventType("RDS-EVENT-0074", "db-cluster-snapshot", "backup", "Creating manual cluster snapshot."),
        EventType("RDS-EVENT-0075", "db-cluster-snapshot", "backup", "Manual cluster snapshot created."),
        EventType("RDS-EVENT-0005", "db-instance", "creation", "DB instance created."),
        EventType("RDS-EVENT-0003", "db-instance", "deletion", "DB instance deleted."),
        EventType("RDS-EVENT-0004", "db-instance", "availability", "DB instance shutdown."),
        EventType("RDS-EVENT-0006", "db-instance", "availability", "DB instance restarted."),
        EventType(
            "RDS-EVENT-0035",
            "db-instance",
            "failure",
            "Database instance put into {state}. {message}.",
        ),
        EventType("RDS-EVENT-0092", "db-instance", "configuration change", "Finished updating DB parameter group."),
        EventType("RDS-EVENT-0014", "db-instance", "configuration change", "DB instance shape changed."),
    )
}


@dataclass
class AuroraEvent:
    """One event, shaped like moto's ``Event`` (its attributes are what the RDS serializer reads)."""

    event_id: str
    source_identifier: str
    source_type: str
    message: str
    event_categories: list[str]
    source_arn: str
    date: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


def make_event(event_id: str, source_identifier: str, source_arn: str, **names: str) -> AuroraEvent:
    """The catalogue's event ``event_id`` about ``source_identifier``; ``names`` fill its message."""
    kind = CATALOGUE[event_id]
    return AuroraEvent(
        event_id=event_id,
        source_identifier=source_identifier,
        source_type=kind.source_type,
        message=kind.message.format(**names) if names else kind.message,
        event_categories=[kind.category],
        source_arn=source_arn,
    )
