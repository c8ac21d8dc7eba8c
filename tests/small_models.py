"""Small random model configs shared by the tests (keyword dicts for our configs and transformers').

Read only: spread them into a new dict (`{**SMALL_BERT, "num_labels": 3}`) to change a field.
"""

SMALL_BERT = dict(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=64,
    type_vocab_size=2,
)

# MobileBERT's layout scaled down: 32 wide between blocks, a 16-wide bottleneck, 8-wide embeddings
SMALL_MOBILEBERT = dict(
    vocab_size=50,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=24,
    embedding_size=8,
    intra_bottleneck_size=16,
    max_position_embeddings=16,
)
