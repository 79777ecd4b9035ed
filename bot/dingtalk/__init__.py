"""The DingTalk bot: translates DingTalk messages into core Requests and Answers into DingTalk replies.

Stream mode (``stream.py``, the official SDK over WebSocket) and HTTP callback mode (``http.py``)
both hand an :class:`~bot.dingtalk.message.Incoming` to :class:`~bot.dingtalk.bot.DingTalkBot`;
proactive posts (digests) go through :class:`~bot.dingtalk.poster.DingTalkPoster`.
"""
