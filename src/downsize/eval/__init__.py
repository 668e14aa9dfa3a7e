"""Evaluation: perplexity, agreement with a teacher, speed and memory, tool use, the report."""
