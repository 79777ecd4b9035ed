"""Conversation memory per DingTalk conversation id: the last few turns, bounded, in process memory."""

from __future__ import annotations

from collections import OrderedDict, deque

from core.contracts import Turn


class ConversationMemory:
    """Keeps ``max_turns`` turns for each of the ``max_conversations`` most recently active conversations."""

    def __init__(self, *, max_conversations: int = 1000, max_turns: int = 6, max_chars: int = 2000) -> None:
        self.max_conversations = max_conversations
        self.max_turns = max_turns
        self.max_chars = max_chars
        self._turns: OrderedDict[str, deque[Turn]] = OrderedDict()

    def history(self, conversation_id: str) -> list[Turn]:
        """The remembered turns of a conversation, oldest first."""
        turns = self._turns.get(conversation_id)
        return list(turns) if turns else []

    def remember(self, conversation_id: str, question: str, answer: str) -> None:
        """Add a question and its answer; forget the least recently active conversation when full."""
        turns = self._turns.pop(conversation_id, None) or deque(maxlen=self.max_turns)
        turns.append(Turn("user", question[: self.max_chars]))
        turns.append(Turn("assistant", answer[: self.max_chars]))
        self._turns[conversation_id] = turns
        while len(self._turns) > self.max_conversations:
            self._turns.popitem(last=False)

    def __len__(self) -> int:
        return len(self._turns)
