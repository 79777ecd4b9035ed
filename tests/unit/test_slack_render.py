"""Rendering answers for Slack: escaping, safe links, splitting, blocks."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bot import messages
from bot.slack import render
from bot.slack.inbound import code_snippet, guess_language, plain_text
from core.api import grouped_sources
from core.contracts import Answer, Citation
from core.llm.base import Usage


def answer(text: str, citations=(), backend="local", model="gemma") -> Answer:
    return Answer(text, list(citations), backend, model, Usage(), request_id="req1")


def cite(n: int, uri: str, title: str = "") -> Citation:
    return Citation(n, title or f"Doc {n}", uri, f"d{n}", f"c{n}", "", 0.9)


def test_escape_control_characters():
    assert render.escape("a & b < c > d") == "a &amp; b &lt; c &gt; d"


def test_model_output_cannot_ping_or_forge_links():
    out = render.to_mrkdwn("<!channel> look <https://evil.example|Docs> & <@U123>")
    assert "<!channel>" not in out and "<https://evil" not in out and "<@U123>" not in out
    assert "&lt;!channel&gt;" in out


def test_only_cited_urls_are_clickable():
    text = "See [guide](https://wiki.example/guide), [x](https://evil.example/?q=secret) and https://evil.example/a."
    out = render.to_mrkdwn(text, allowed={"https://wiki.example/guide"})
    assert "<https://wiki.example/guide|guide>" in out
    assert "x (`https://evil.example/?q=secret`)" in out
    assert "`https://evil.example/a`." in out
    assert out.count("<") == 1


def test_images_and_bare_hosts_are_inert():
    out = render.to_mrkdwn("![](https://evil.example/p.png?d=1) visit secret.evil.example/x now")
    assert "<" not in out
    assert "`https://evil.example/p.png?d=1`" in out and "`secret.evil.example/x`" in out


def test_code_is_kept_verbatim_but_escaped():
    out = render.to_mrkdwn("Run:\n```\nif a < b && c:\n  go('https://x.example')\n```\nand `a<b`")
    assert "```\nif a &lt; b &amp;&amp; c:\n  go('https://x.example')\n```" in out
    assert "`a&lt;b`" in out


def test_markdown_bold_and_headings_become_mrkdwn():
    assert render.to_mrkdwn("# Title\n**bold** text") == "*Title*\n*bold* text"


def test_split_respects_limit_and_keeps_all_words():
    text = "\n\n".join(" ".join(f"w{p}_{i}" for i in range(60)) for p in range(20))
    parts = render.split_text(text, 500)
    assert all(len(p) <= 500 for p in parts) and len(parts) > 5
    assert " ".join(parts).split() == text.split()


def test_split_closes_and_reopens_code_fences():
    text = "```\n" + "\n".join(f"line {i}" for i in range(200)) + "\n```"
    parts = render.split_text(text, 300)
    assert len(parts) > 1
    assert all(p.count("```") % 2 == 0 for p in parts)


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=0, max_size=3000))
def test_split_never_exceeds_limit(text):
    assert all(len(p) <= 200 for p in render.split_text(text, 200))


def test_final_blocks_carry_sources_footer_and_buttons():
    a = answer(
        "Fact [1].", [cite(1, "https://wiki.example/a", "Guide | A"), cite(2, "docs/b.md")], backend="remote"
    )
    blocks = render.final_blocks(render.answer_parts(a)[0], a)
    text = str(blocks)
    assert "<https://wiki.example/a|Guide / A>" in text and "`docs/b.md`" in text
    assert messages.FOOTER.format(model="gemma", where=messages.REMOTE) in text
    actions = [b for b in blocks if b["type"] == "actions"][0]
    assert [e["value"] for e in actions["elements"]] == ["up:req1", "down:req1"]


def test_nothing_found_has_no_model_footer():
    a = answer(messages.NOT_FOUND, backend="none", model="")
    assert render.footer_text(a) is None
    assert "Answered by" not in str(render.final_blocks(render.answer_parts(a)[0], a))


def test_text_table_escapes_and_truncates():
    table = render.text_table(["name", "n"], [["<b>", 1]] * 20, max_rows=3)
    assert "&lt;b&gt;" in table and "17 more row(s)" in table and table.startswith("```")


def test_plain_text_unwraps_slack_markup():
    raw = "<@UBOT> what about <#C1|general>, <https://x.example/a|x> &amp; <@U2>?"
    assert plain_text(raw, "UBOT") == "what about #general, https://x.example/a & @U2?"


def test_code_snippet_reads_fence_tag_or_guesses():
    assert code_snippet("```go\nfunc main() {}\n```") == ("func main() {}", "go")
    assert code_snippet("SELECT * FROM t")[1] == "sql"
    assert guess_language("def f():\n    return 1") == "python"
    assert guess_language("just words") == "code"


def chunk(n: int, doc: str, uri: str, title: str, location: str) -> Citation:
    return Citation(n, title, uri, doc, f"{doc}#{n}", location, 0.9)


def test_sources_name_each_document_once_with_every_number_that_points_into_it():
    a = answer(
        "Leave [1], payout [3], form [2].",
        [
            chunk(1, "wiki:leave", "https://wiki.example/leave", "Leave policy", "Vacation"),
            chunk(2, "hr:form", "docs/hr/form.md", "Request form", ""),
            chunk(3, "wiki:leave", "https://wiki.example/leave", "Leave policy", "Payout"),
            chunk(4, "wiki:leave", "https://wiki.example/leave", "Leave policy", "Vacation"),
        ],
    )
    [sources] = [b for b in render.final_blocks(render.answer_parts(a)[0], a) if "Sources" in str(b)]
    line = sources["elements"][0]["text"]
    assert line == (
        "*Sources:* [1, 3, 4] <https://wiki.example/leave|Leave policy> (Vacation; Payout)"
        " · [2] *Request form* `docs/hr/form.md`"
    )
    assert line.count("wiki.example/leave") == 1


def test_a_source_title_and_places_cannot_forge_slack_markup():
    group = grouped_sources([chunk(1, "d", "https://x.example/a", "A|<!channel>", "<@U1> & more")])[0]
    line = render.source_line(group)
    assert line == "[1] <https://x.example/a|A/&lt;!channel&gt;> (&lt;@U1&gt; &amp; more)"
