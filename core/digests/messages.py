"""Every sentence a digest posts or a digest command answers (the core's share of the chat catalogue).

These live in the core, not in bot/messages.py, because the scheduler posts them without any
chat surface in the call path (core never imports bot/).
"""

from __future__ import annotations

NO_CHANGES = "No changes since the last digest."
SUMMARY_UNAVAILABLE = "(The summary could not be written: {reason})"
CHANGED_DOCS = "Changed documents"
NOTES = "Notes"
WRITTEN_BY = "Written by {model} ({backend})."
TABLE_MORE_ROWS = "(+{count} more rows)"
TABLE_NO_ROWS = "(no rows)"

OWNER_FAILED = (
    "The digest '{name}' ({fire_time}) did not reach every destination: {problems}. "
    "See `hearth digest history {name}`."
)
OWNER_REJECTED = (
    "The digest '{name}' ({fire_time}) left out a table: {reasons}. Fix its SQL in the digest spec."
)

OWNER_STOPPED = "The digest '{name}' ({fire_time}) was not posted: {reasons}"

CMD_USAGE = (
    'Usage: `/digest create NAME "CRON" post_to=slack:#channel [template=digest_weekly] [timezone=UTC] '
    "[docs=source1,source2] [chat=#channel1,#channel2] [on_no_changes=post|skip]`, `/digest list`, `/digest run NAME`, "
    "`/digest delete NAME`."
)
CMD_CREATED = "Created digest '{name}': {schedule} ({timezone}), next run {next_run}."
CMD_DELETED = "Deleted digest '{name}'."
CMD_NO_DIGESTS = "No digests yet. " + CMD_USAGE
CMD_UNKNOWN = "Unknown digest '{name}'; available: {available}."
CMD_FORBIDDEN = "This digest cannot post there: {reason}."
CMD_NOT_YOURS = "Only the creator of '{name}' ({owner}) or a digest admin can delete it."
CMD_IN_CONFIG = "The digest '{name}' is defined in hearth.yaml; change it there."
CMD_EXISTS = "A digest named '{name}' already exists."
CMD_INVALID = "Invalid digest — {field}: {reason}"
CMD_RAN = "Ran '{name}': {status}{detail}."
CMD_ALREADY = "'{name}' is already running or has just run; nothing was posted again."
CMD_FAILED = "Sorry — the digest command failed. The team has the details in the logs."
