"""DingTalk signatures, payload parsing, commands, rendering and memory."""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import parse_qs, urlsplit

import pytest

from bot.dingtalk import commands
from bot.dingtalk.commands import Kind
from bot.dingtalk.memory import ConversationMemory
from bot.dingtalk.message import Incoming
from bot.dingtalk.render import answer_markdown
from bot.dingtalk.signing import CallbackRejected, sign, signed_webhook_url, verify_callback
from bot.dingtalk.texts import pick_language
from core.contracts import Answer, Citation
from core.errors import InputError
from core.llm.base import Usage
from tests.fixtures.dingtalk_gateway import robot_message

SECRET = "app-secret"
NOW = 1_700_000_000_000


def reference_sign(timestamp: str, secret: str) -> str:
    """DingTalk's documented algorithm, written out independently of the code under test."""
    mac = hmac.new(
        secret.encode("utf-8"), (timestamp + "\n" + secret).encode("utf-8"), digestmod=hashlib.sha256
    )
    return base64.b64encode(mac.digest()).decode("utf-8")


def test_sign_matches_the_documented_algorithm() -> None:
    assert sign(str(NOW), SECRET) == reference_sign(str(NOW), SECRET)


def test_valid_callback_signature_passes() -> None:
    verify_callback(str(NOW - 5_000), reference_sign(str(NOW - 5_000), SECRET), SECRET, now_ms=NOW)


@pytest.mark.parametrize(
    ("timestamp", "signature", "reason"),
    [
        (str(NOW), reference_sign(str(NOW), "other-secret"), "does not match"),
        (str(NOW - 7_200_000), reference_sign(str(NOW - 7_200_000), SECRET), "away from now"),
        (str(NOW + 7_200_000), reference_sign(str(NOW + 7_200_000), SECRET), "away from now"),
        (None, "x", "missing"),
        (str(NOW), None, "missing"),
        ("yesterday", "x", "not a number"),
    ],
)
def test_bad_callback_signatures_are_rejected(
    timestamp: str | None, signature: str | None, reason: str
) -> None:
    with pytest.raises(CallbackRejected, match=reason):
        verify_callback(timestamp, signature, SECRET, now_ms=NOW)


def test_webhook_url_is_signed_and_url_encoded() -> None:
    url = signed_webhook_url("https://oapi.dingtalk.com/robot/send?access_token=abc", "SECxyz", NOW)
    query = parse_qs(urlsplit(url).query)
    assert query["access_token"] == ["abc"]
    assert query["timestamp"] == [str(NOW)]
    assert query["sign"] == [reference_sign(str(NOW), "SECxyz")]
    assert "+" not in url.split("sign=")[1] and "/" not in url.split("sign=")[1]
    assert (
        signed_webhook_url("https://x/robot/send?access_token=a", None, NOW)
        == "https://x/robot/send?access_token=a"
    )


def test_payload_parsing() -> None:
    data = robot_message("hello", group=True, conversation_id="cid-g", staff_id="s9", at=True)
    incoming = Incoming.from_payload(data)
    assert incoming.text == "hello" and incoming.is_group and incoming.in_at_list
    assert (incoming.staff_id, incoming.conversation_id, incoming.robot_code) == ("s9", "cid-g", "robot-1")
    assert Incoming.from_payload(robot_message("", msgtype="picture")).text is None


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("msgId"), "msgId"),
        (lambda d: (d.pop("senderStaffId"), d.pop("senderId")), "senderStaffId"),
        (lambda d: d.pop("conversationId"), "conversationId"),
        (lambda d: d.update(conversationType="3"), "conversationType"),
        (lambda d: d.update(text="hi"), "text.content"),
        (lambda d: d.update(sessionWebhookExpiredTime="soon"), "milliseconds"),
    ],
)
def test_payload_missing_fields_are_named(mutate, message: str) -> None:
    data = robot_message("hello")
    mutate(data)
    with pytest.raises(InputError, match=message):
        Incoming.from_payload(data)


def test_payload_must_be_an_object() -> None:
    with pytest.raises(InputError, match="JSON object"):
        Incoming.from_payload(["not", "a", "dict"])


@pytest.mark.parametrize(
    ("text", "kind", "rest", "explicit"),
    [
        ("/ask how do I deploy?", Kind.ASK, "how do I deploy?", True),
        ("  /data revenue by month", Kind.DATA, "revenue by month", True),
        ("/explain ```python\nprint(1)\n```", Kind.EXPLAIN, "```python\nprint(1)\n```", True),
        ("/help", Kind.HELP, "", True),
        ("/HELP", Kind.HELP, "", True),
        ("问 怎么申请休假？", Kind.ASK, "怎么申请休假？", True),
        ("问：怎么申请休假？", Kind.ASK, "怎么申请休假？", True),
        ("提问 报销流程", Kind.ASK, "报销流程", True),
        ("数据 上个月的销售额", Kind.DATA, "上个月的销售额", True),
        ("解释 print(1)", Kind.EXPLAIN, "print(1)", True),
        ("帮助", Kind.HELP, "", True),
        ("/digest list", Kind.DIGEST, "list", True),
        ("摘要 run team-weekly", Kind.DIGEST, "run team-weekly", True),
        ("@Hearth 帮助", Kind.HELP, "", True),
        ("问题是什么", Kind.ASK, "问题是什么", False),
        ("数据库怎么连接", Kind.ASK, "数据库怎么连接", False),
        ("/asking for a friend", Kind.ASK, "/asking for a friend", False),
        ("how do I deploy?", Kind.ASK, "how do I deploy?", False),
    ],
)
def test_commands(text: str, kind: Kind, rest: str, explicit: bool) -> None:
    command = commands.parse(text)
    assert (command.kind, command.text, command.explicit) == (kind, rest, explicit)


def test_code_and_language() -> None:
    assert commands.code_and_language("```python\nprint(1)\n```") == ("print(1)", "python")
    assert commands.code_and_language("x = 1") == ("x = 1", "source")


def test_language_choice() -> None:
    assert pick_language("auto", "怎么请假") == "zh"
    assert pick_language("auto", "how do I") == "en"
    assert pick_language("zh", "how do I") == "zh"
    assert pick_language("en", "怎么请假") == "en"


def test_answer_markdown_has_sources_notices_and_footer() -> None:
    answer = Answer(
        "Use the portal [1].",
        [
            Citation(1, "Leave [policy]", "https://wiki/leave", "d", "c", "Section 2", 0.9),
            Citation(2, "Handbook", "docs/handbook.md", "d2", "c2", "", 0.5),
        ],
        "remote",
        "gpt-x",
        Usage(),
        notices=["Question was trimmed."],
    )
    en = answer_markdown(answer, "en")
    assert "**Sources**" in en and "- [1] [Leave (policy)](https://wiki/leave) — Section 2" in en
    assert "- [2] Handbook (docs/handbook.md)" in en
    assert "> Question was trimmed." in en
    assert en.endswith("Answered by gpt-x (remote)")
    zh = answer_markdown(answer, "zh")
    assert "**来源**" in zh and zh.endswith("由 gpt-x（远程）回答")


def test_memory_is_bounded() -> None:
    memory = ConversationMemory(max_conversations=2, max_turns=4)
    for i in range(3):
        memory.remember("a", f"q{i}", f"a{i}")
    assert [t.text for t in memory.history("a")] == ["q1", "a1", "q2", "a2"]
    memory.remember("b", "q", "a")
    memory.remember("c", "q", "a")
    assert len(memory) == 2 and memory.history("a") == []
