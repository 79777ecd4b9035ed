"""Slack surface: a slack-bolt app that turns Slack events into core Requests and Answers into messages."""
