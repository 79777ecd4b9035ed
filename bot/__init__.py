"""Chat surfaces (Slack, DingTalk): thin translations between platform events and core Requests/Answers."""
