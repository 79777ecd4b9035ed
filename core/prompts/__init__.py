"""Named, versioned prompt templates that every use case renders."""

from core.prompts.registry import PromptRegistry, PromptTemplate, RenderedPrompt

__all__ = ["PromptRegistry", "PromptTemplate", "RenderedPrompt"]
