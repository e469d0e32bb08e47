"""Disease knowledge base and the prompt designer (`doctorkit knowledge search KB "question"`)."""
from doctorkit.knowledge.base import DEFAULT_THRESHOLD, Entry, Hit, KnowledgeBase
from doctorkit.knowledge.cli import main, run
from doctorkit.knowledge.prompt import KnowledgeSettings, count_tokens, ground, grounder, knowledge_text

__all__ = ["DEFAULT_THRESHOLD", "Entry", "Hit", "KnowledgeBase", "KnowledgeSettings", "count_tokens", "ground",
           "grounder", "knowledge_text", "main", "run"]
