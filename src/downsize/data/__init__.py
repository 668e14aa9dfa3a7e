"""Data: references to text corpora, the stdlib reference corpus, tokenising and packing."""
