"""How an exception reads in someone else's ticket system: summary, description, priority."""

from __future__ import annotations

from typing import Any

from server.domain.exceptions import ReconException, Severity, format_amount


def summary(e: ReconException) -> str:
    # One line, at most 255 characters (JIRA's limit; ServiceNow's short_description is 160).
    text = f"Reconciliation exception {e.transaction_id}"
    if e.reason:
        text += f": {e.reason}"
    return " ".join(text.split())[:160]


def facts(e: ReconException, key: str) -> list[tuple[str, str]]:
    rows = [
        ("Exception id", e.id),
        ("Transaction id", e.transaction_id),
        ("Severity", e.severity.name),
        ("Status", e.status.name),
    ]
    if e.amount is not None:
        rows.append(("Amount", f"{format_amount(e.amount)} {e.currency or ''}".strip()))
    if e.source:
        rows.append(("Source", e.source))
    if e.reason:
        rows.append(("Reason", e.reason))
    rows.append(("Occurred at", e.occurred_at.isoformat()))
    if e.due_at is not None:
        rows.append(("Due at", e.due_at.isoformat()))
    rows.extend((f"Metadata {k}", v) for k, v in sorted(e.metadata.items()))
    rows.append(("Dispatch key", key))
    return rows


def description(e: ReconException, key: str) -> str:
    return "\n".join(f"{label}: {value}" for label, value in facts(e, key))


def as_json(e: ReconException) -> dict[str, Any]:
    """The exception as the webhook payload carries it (the API's own field names)."""
    body: dict[str, Any] = {
        "id": e.id,
        "transaction_id": e.transaction_id,
        "severity": e.severity.name,
        "status": e.status.name,
        "reason": e.reason,
        "source": e.source,
        "metadata": dict(e.metadata),
        "created_at": e.created_at.isoformat(),
        "occurred_at": e.occurred_at.isoformat(),
    }
    if e.amount is not None:
        body["amount"] = format_amount(e.amount)
        body["currency"] = e.currency
    if e.assigned_to is not None:
        body["assigned_to"] = e.assigned_to
    if e.due_at is not None:
        body["due_at"] = e.due_at.isoformat()
    return body


# JIRA's default priority scheme.
JIRA_PRIORITY = {
    Severity.CRITICAL: "Highest",
    Severity.HIGH: "High",
    Severity.MEDIUM: "Medium",
    Severity.LOW: "Low",
}

# ServiceNow (urgency, impact), 1 = high .. 3 = low; its default priority matrix turns these into
# P1 Critical, P2 High, P3 Moderate and P4 Low.
SERVICENOW_URGENCY_IMPACT = {
    Severity.CRITICAL: ("1", "1"),
    Severity.HIGH: ("1", "2"),
    Severity.MEDIUM: ("2", "2"),
    Severity.LOW: ("2", "3"),
}


def resolution_text(e: ReconException, marker: str) -> str:
    """The comment (JIRA) or close notes (ServiceNow) that tell a ticket its exception was resolved;
    the marker lets a retry find a comment an unanswered attempt already made."""
    lines = [f"Resolved in reconrouter: {e.resolution_notes or 'resolved'}"]
    if e.resolution_reason:
        lines.append(f"Reason: {e.resolution_reason}")
    lines.append(f"[{marker}]")
    return "\n".join(lines)
