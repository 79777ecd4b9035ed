"""Every sentence a chat user can see, in one catalogue (Slack and DingTalk share it).

Keep them short, friendly and free of internals: no tracebacks, no exception names.
"""

from __future__ import annotations

# --- shared -------------------------------------------------------------------------------
EMPTY_QUESTION = "Ask me something — for example `/ask how do I request time off?`"
QUESTION_TOO_LONG = "That message is {length:,} characters; I can take up to {limit:,}. Please shorten it."
RATE_LIMITED = "You're asking faster than I can answer — please wait {seconds:.0f}s and try again."
MODEL_DOWN = "Sorry — no model is available to answer right now. Please try again in a few minutes."
GENERIC_ERROR = "Sorry — something went wrong while answering. The team has the details in the logs."
THINKING = "Thinking…"
NOT_FOUND = "I could not find this in the docs."
FOOTER = "Answered by {model} ({where})"
LOCAL = "local"
REMOTE = "remote"
SOURCES = "Sources"
