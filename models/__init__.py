"""A self-contained BERT-compatible encoder that loads HuggingFace checkpoints."""
