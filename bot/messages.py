"""Every sentence a chat user can see, in one catalogue (Slack and DingTalk share it).

Keep them short, friendly and free of internals: no tracebacks, no exception names.
"""

from __future__ import annotations

from core.refusals import Reason

# --- shared -------------------------------------------------------------------------------
# The two sentences that show a command: {ask} / {explain} are filled with Slack's configured names
# (slack.commands, see slack_refusals); DingTalk's commands are fixed, so it reads them filled in.
EMPTY_QUESTION_FOR = "Ask me something — for example `{ask} how do I request time off?`"
EMPTY_CODE_FOR = "Paste the code after the command, for example `{explain} print(1 + 1)`."
EMPTY_QUESTION = EMPTY_QUESTION_FOR.format(ask="/ask")
QUESTION_TOO_LONG = "That message is {length:,} characters; I can take up to {limit:,}. Please shorten it."
RATE_LIMITED = "You're asking faster than I can answer — please wait {seconds:.0f}s and try again."
MODEL_DOWN = "Sorry — no model is available to answer right now. Please try again in a few minutes."
GENERIC_ERROR = "Sorry — something went wrong while answering. The team has the details in the logs."
THINKING = "Thinking…"
ANSWER_LOST = "Sorry — this answer was lost when Hearth restarted. Please ask again."
NOT_FOUND = "I could not find this in the docs."
FOOTER = "Answered by {model} ({where})"
LOCAL = "local"
REMOTE = "remote"
SOURCES = "Sources"
TABLE_MORE = "…and {count:,} more row(s)"
TABLE_EMPTY = "(no rows)"

# --- slack --------------------------------------------------------------------------------
SLACK_HELP = (  # {ask} … {help}: the configured command names (slack.commands)
    "*Hearth* answers from your team's docs and tables.\n"
    "• `{ask} <question>` — ask the docs (answers show their sources)\n"
    "• `{data} <question>` — ask the tables (shows the table and the SQL)\n"
    "• `{explain} <code>` — explain a pasted snippet\n"
    "• `@Hearth <question>` in a channel — the answer arrives in a thread; reply there to follow up, "
    "no need to mention me again\n"
    "• a direct message to me works too\n"
    "• `{digest} list` — scheduled digests\n"
    "• `{help} help` — this message"
)
SLACK_ASKED = "<@{user}> asked: {question}"
SLACK_SQL = "SQL"
SLACK_CONTINUED = "(continued)"
SLACK_FEEDBACK_UP = "👍"
SLACK_FEEDBACK_DOWN = "👎"
SLACK_FEEDBACK_THANKS = "Thanks for the feedback — it helps the team improve the answers."
SLACK_HISTORY_SUMMARY = "Earlier in this thread ({count} older message(s) left out to fit): {summary}"
SLACK_NOT_IN_CHANNEL = (
    "I can't post in this channel yet — invite me with `/invite @Hearth`, or send me a direct message."
)
SLACK_UNKNOWN_COMMAND = "I don't know `{command}`. Try `{help} help`."
SLACK_DIGESTS_UNAVAILABLE = (
    "Digest commands are not set up on this Hearth yet — ask the team to configure `digests`."
)
SLACK_LINK_REMOVED = "link removed"
SLACK_WITHHELD = (
    "This answer uses only sources everyone in this channel may read. {count} more document(s) that only "
    "you can read were left out — send me a direct message for an answer that uses them."
)
SLACK_EMPTY_ANSWER = "The model gave an empty answer — please try rephrasing the question."
SLACK_ACTIVITY_NOTE = "{channel} · (not read: {reason})"
SLACK_ACTIVITY_NOT_FOUND = "no such channel — check the name in inputs.chat.channels"
SLACK_ACTIVITY_NOT_IN_CHANNEL = "Hearth is not in this channel — invite it with `/invite @Hearth`"
SLACK_ACTIVITY_MISSING_SCOPE = (
    "the Slack app lacks a scope — add channels:history/read and groups:history/read"
)
SLACK_ACTIVITY_RATE_LIMITED = "Slack rate-limited the history reads even after retries"
SLACK_ACTIVITY_FAILED = "Slack answered '{code}'"

# --- dingtalk -----------------------------------------------------------------------------
# English sentences DingTalk adds to the shared ones; DINGTALK_ZH holds the Chinese text of every
# sentence a DingTalk reply can carry, keyed by the English constant's name.
DINGTALK_HELP = (
    "**Hearth** answers from your team's docs and tables.\n\n"
    "- `/ask <question>` (or just type in a 1:1 chat) — ask the docs\n"
    "- `/data <question>` — ask the tables\n"
    "- `/explain <code>` — explain a piece of code\n"
    "- `/digest list` (or `create`, `run`, `delete`) — scheduled digests\n"
    "- `/help` — this message\n\n"
    "中文：`问 …`、`数据 …`、`解释 …`、`摘要 …`、`帮助`"
)
DINGTALK_NOT_TEXT = "I can only read text messages — please type your question."
DINGTALK_REPLY_TITLE = "Hearth"
DINGTALK_DIGESTS_UNAVAILABLE = "Digests are not running on this Hearth — ask the team to enable them."
DINGTALK_WITHHELD = (
    "Your question in the group was answered only from sources everyone in it may read. {count} more "
    "document(s) that only you can read were left out — ask me here for an answer that uses them."
)
DINGTALK_ZH: dict[str, str] = {
    "EMPTY_QUESTION": "请输入问题，例如：`问 如何申请休假？`",
    "QUESTION_TOO_LONG": "这条消息有 {length:,} 个字符，最多只能处理 {limit:,} 个字符，请精简后再试。",
    "RATE_LIMITED": "提问太快了，请等待 {seconds:.0f} 秒后再试。",
    "MODEL_DOWN": "抱歉，目前没有可用的模型来回答，请几分钟后再试。",
    "GENERIC_ERROR": "抱歉，回答时出了点问题，详细信息已记录在日志中。",
    "THINKING": "思考中…",
    "ANSWER_LOST": "抱歉，Hearth 重启时丢失了这个回答，请重新提问。",
    "NOT_FOUND": "文档中没有找到相关内容。",
    "FOOTER": "由 {model}（{where}）回答",
    "LOCAL": "本地",
    "REMOTE": "远程",
    "SOURCES": "来源",
    "TABLE_MORE": "……另有 {count:,} 行",
    "TABLE_EMPTY": "（无数据）",
    "DINGTALK_HELP": (
        "**Hearth** 根据团队的文档和数据表回答问题。\n\n"
        "- `问 <问题>` 或 `/ask <问题>`（单聊中直接输入即可）— 查询文档\n"
        "- `数据 <问题>` 或 `/data <问题>` — 查询数据表\n"
        "- `解释 <代码>` 或 `/explain <代码>` — 解释一段代码\n"
        "- `摘要 list`（或 `create`、`run`、`delete`）— 定时摘要\n"
        "- `帮助` 或 `/help` — 显示本帮助"
    ),
    "DINGTALK_NOT_TEXT": "目前只能读取文字消息，请直接输入问题。",
    "DINGTALK_REPLY_TITLE": "Hearth",
    "DINGTALK_DIGESTS_UNAVAILABLE": "此 Hearth 未运行定时摘要，请联系管理员启用。",
    "DINGTALK_WITHHELD": (
        "你在群里的问题只根据群内所有人都能查看的资料作答。另有 {count} 份只有你能查看的文档未被使用，"
        "在这里单独问我即可得到包含这些文档的回答。"
    ),
}


# --- refusals: what the chat surfaces say for each of the core's reasons (core.refusals.Reason) ---
REFUSALS: dict[Reason, str] = {
    Reason.DUPLICATE: "",
    Reason.EMPTY: EMPTY_QUESTION,
    Reason.EMPTY_CODE: EMPTY_CODE_FOR.format(explain="/explain"),
    Reason.TOO_LONG: QUESTION_TOO_LONG,
    Reason.BINARY: "I can only read plain text — please send the question as text.",
    Reason.RATE_LIMITED: RATE_LIMITED,
    Reason.NOT_READY: MODEL_DOWN,
    Reason.MODEL_DOWN: MODEL_DOWN,
    Reason.RETRIEVAL_DOWN: "Sorry — the document search is not available right now. Please try again shortly.",
    Reason.TABLES_UNAVAILABLE: "Table questions are not set up on this Hearth yet — ask the team to configure `tables`.",
    Reason.TABLES_NO_ACCESS: "You don't have access to any table source — ask the team to add you to one.",
    Reason.TABLE_NO_SQL: (
        "I couldn't turn that into a query ({attempts} tries) — try naming the table and the columns."
    ),
    Reason.CODE_UNAVAILABLE: "Code generation is not set up on this Hearth.",
    Reason.COMPLETION_UNAVAILABLE: "Inline code suggestions are not set up on this Hearth (they need a local model).",
    Reason.CODE_UNUSABLE: "{detail} Please try again.",
    Reason.SQL_REJECTED: "I couldn't answer that from the tables: the query was refused ({reason})",
    Reason.TABLE_ERROR: "I couldn't answer that from the tables: {reason}",
    Reason.BAD_INPUT: "I can't work with that: {detail}",
    Reason.ERROR: GENERIC_ERROR,
}


def slack_refusals(ask: str, explain: str) -> dict[Reason, str]:
    """The chat catalogue as Slack words it: the sentences that show a command name the configured ones."""
    # A configured name is `/[a-z0-9_-]+` (core.config.SlackCommands): no braces reach format().
    return REFUSALS | {
        Reason.EMPTY: EMPTY_QUESTION_FOR.format(ask=ask),
        Reason.EMPTY_CODE: EMPTY_CODE_FOR.format(explain=explain),
    }


REFUSALS_ZH: dict[Reason, str] = {
    Reason.DUPLICATE: "",
    Reason.EMPTY: DINGTALK_ZH["EMPTY_QUESTION"],
    Reason.EMPTY_CODE: "请在 `解释` 后附上要解释的代码，例如：`解释 print(1 + 1)`。",
    Reason.TOO_LONG: DINGTALK_ZH["QUESTION_TOO_LONG"],
    Reason.BINARY: "目前只能读取纯文本，请以文字形式发送问题。",
    Reason.RATE_LIMITED: DINGTALK_ZH["RATE_LIMITED"],
    Reason.NOT_READY: DINGTALK_ZH["MODEL_DOWN"],
    Reason.MODEL_DOWN: DINGTALK_ZH["MODEL_DOWN"],
    Reason.RETRIEVAL_DOWN: "抱歉，文档搜索暂时不可用，请稍后再试。",
    Reason.TABLES_UNAVAILABLE: "此 Hearth 尚未配置数据表查询，请联系管理员配置 `tables`。",
    Reason.TABLES_NO_ACCESS: "你没有任何数据表的访问权限，请联系管理员为你开通。",
    Reason.TABLE_NO_SQL: "无法把这个问题转换成查询（已尝试 {attempts} 次），请写明表名和列名后再试。",
    Reason.CODE_UNAVAILABLE: "此 Hearth 尚未配置代码生成。",
    Reason.COMPLETION_UNAVAILABLE: "此 Hearth 尚未配置行内代码补全（需要本地模型）。",
    Reason.CODE_UNUSABLE: "模型生成的代码无法使用，请重试。",
    Reason.SQL_REJECTED: "无法根据数据表回答：查询被拒绝（{reason}）",
    Reason.TABLE_ERROR: "无法根据数据表回答：{reason}",
    Reason.BAD_INPUT: "无法处理这个请求：{detail}",
    Reason.ERROR: DINGTALK_ZH["GENERIC_ERROR"],
}
