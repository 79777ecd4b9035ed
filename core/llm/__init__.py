"""Language-model backends behind one Protocol, a router with fallback, and the local queue."""

from core.llm.base import Chunk, GenOptions, LLMBackend, Message, Priority, Role, Usage, collect

__all__ = ["Chunk", "GenOptions", "LLMBackend", "Message", "Priority", "Role", "Usage", "collect"]
