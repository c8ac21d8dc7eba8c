"""The task heads shared by every family (models/heads.py): each family's head classes put the
bare encoder under the family's weight prefix and add only the head modules the loader knows."""

import pytest
import torch

from models.families import FAMILIES
from models.heads import SequenceClassification, TokenClassification

SMALL = {  # a few small widths per family; everything else is the family's default
    "bert": dict(
        vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24
    ),
    "distilbert": dict(vocab_size=40, dim=16, n_layers=2, n_heads=2, hidden_dim=24),
    "mobilebert": dict(
        vocab_size=40,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=24,
        embedding_size=8,
        intra_bottleneck_size=8,
    ),
}


@pytest.mark.parametrize("name", FAMILIES)
def test_heads_put_the_encoder_under_the_prefix_and_add_only_head_modules(name):
    fam = FAMILIES[name]
    cfg = fam.config(**SMALL[name])
    bare = set(fam.heads[None](cfg).state_dict())
    seq = fam.heads["sequence-classification"](cfg, num_labels=3)
    tok = fam.heads["token-classification"](cfg, num_labels=5)
    assert isinstance(seq, SequenceClassification) and isinstance(tok, TokenClassification)
    assert type(getattr(seq, fam.prefix)) is fam.heads[None] is type(getattr(tok, fam.prefix))
    for head, labels in ((seq, 3), (tok, 5)):
        keys = set(head.state_dict())
        own = {k for k in keys if k.split(".")[0] in fam.head_modules}
        encoder = {f"{fam.prefix}.{k}" for k in bare}
        if head is tok:  # built without a pooler, as HF builds its token head
            encoder = {k for k in encoder if not k.startswith(f"{fam.prefix}.pooler.")}
        assert keys - own == encoder and head.classifier.out_features == labels
        assert head.config.num_labels == labels and head.num_labels == labels


@pytest.mark.parametrize("name", FAMILIES)
def test_heads_read_what_their_docstring_says(name):
    """Sequence logits = classifier(pool(encoder)) and token logits = classifier(h_t), in eval."""
    fam = FAMILIES[name]
    cfg = fam.config(**SMALL[name])
    ids = torch.randint(1, 40, (2, 6))
    seq = fam.heads["sequence-classification"](cfg, num_labels=3).eval()
    enc = getattr(seq, fam.prefix)
    pooled = enc(ids).pooler_output  # (batch, hidden)
    if hasattr(seq, "pre_classifier"):  # DistilBERT: ReLU(W_pre h[:, 0] + b_pre)
        pooled = torch.relu(seq.pre_classifier(pooled))
    torch.testing.assert_close(seq(ids), seq.classifier(pooled), rtol=1e-5, atol=1e-6)
    tok = fam.heads["token-classification"](cfg, num_labels=5).eval()
    h = getattr(tok, fam.prefix)(ids).last_hidden_state  # (batch, seq, hidden)
    assert torch.equal(tok(ids), tok.classifier(h))
