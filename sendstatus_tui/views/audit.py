"""The audit trail as the operator reads it: ``sendstatus log`` and a mailing's history on
its details screen (times in the operator's zone, each naming it)."""

from datetime import tzinfo
from typing import Any

from sendstatus_tui.core.model.audit import describe
from sendstatus_tui.core.model.models import AuditEntry
from sendstatus_tui.core.model.when import format_named, to_zone, zone_label
from sendstatus_tui.core.reads.listing import iso


def entry_line(
    entry: AuditEntry, zone: tzinfo, *, with_mailing: bool = True, zone_named: bool = True
) -> str:
    """``2026-11-27 16:25:03 Europe/Rome  stopped  mailing 4 'Winter sale': was sending, …
    by ann from 10.0.0.7 via dashboard``; the zone left out where the screen names it
    once (``zone_named`` false)."""
    local = to_zone(entry.at, zone)
    at = f"{local:%Y-%m-%d %H:%M:%S}"
    if zone_named:
        at += f" {zone_label(zone) if local.tzinfo is zone else 'UTC'}"
    parts = [at, entry.action]
    what = ""
    if with_mailing and entry.mailing_id is not None:
        what = f"mailing {entry.mailing_id} {entry.mailing_name!r}"
    detail = entry.detail
    if entry.scheduled_at:
        detail = f"at {format_named(entry.scheduled_at, zone)}"
    if detail:
        what = f"{what}: {detail}" if what else detail
    if what:
        parts.append(what)
    who = describe(entry.os_user, entry.sudo_user, entry.ssh_from, entry.source)
    return "  ".join([*parts, f"by {who}"])


def entries_text(
    entries: list[AuditEntry], zone: tzinfo, *, with_mailing: bool = True, zone_named: bool = True
) -> str:
    return "\n".join(
        entry_line(entry, zone, with_mailing=with_mailing, zone_named=zone_named)
        for entry in entries
    )


def entry_json(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": iso(entry.at),
        "mailing_id": entry.mailing_id,
        "mailing_name": entry.mailing_name,
        "action": entry.action,
        "detail": entry.detail,
        "scheduled_at": iso(entry.scheduled_at),
        "source": entry.source,
        "user": entry.os_user,
        "sudo_user": entry.sudo_user,
        "ssh_from": entry.ssh_from,
    }
