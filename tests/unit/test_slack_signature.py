"""Slack's v0 request signing, checked against Slack's published example."""

from __future__ import annotations

from slack_sdk.signature import Clock, SignatureVerifier

from tests.fixtures.slack_api import slack_signature

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TIMESTAMP = "1531420618"
BODY = (
    "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
    "&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
    "&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    "&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
EXPECTED = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


class FixedClock(Clock):
    """A clock stopped at a chosen moment (the example's timestamp is from 2018)."""

    def __init__(self, at: float) -> None:
        self.at = at

    def now(self) -> float:
        return self.at


def test_our_signer_matches_slacks_published_example():
    assert slack_signature(SECRET, TIMESTAMP, BODY) == EXPECTED


def test_slack_sdk_verifier_accepts_the_example_at_its_time():
    verifier = SignatureVerifier(SECRET, clock=FixedClock(int(TIMESTAMP) + 10))
    assert verifier.is_valid(BODY, TIMESTAMP, EXPECTED)


def test_slack_sdk_verifier_rejects_stale_tampered_and_wrong_secret():
    assert not SignatureVerifier(SECRET, clock=FixedClock(int(TIMESTAMP) + 301)).is_valid(
        BODY, TIMESTAMP, EXPECTED
    )
    at_time = SignatureVerifier(SECRET, clock=FixedClock(int(TIMESTAMP)))
    assert not at_time.is_valid(BODY.replace("roadrunner", "coyote"), TIMESTAMP, EXPECTED)
    assert not SignatureVerifier("other", clock=FixedClock(int(TIMESTAMP))).is_valid(
        BODY, TIMESTAMP, EXPECTED
    )
