"""A self-contained BERT-compatible encoder that loads HuggingFace checkpoints."""

from models.bert import BertForSequenceClassification, BertForTokenClassification, BertModel, BertOutputs
from models.config import BertConfig
from models.loader import load_pretrained, save_pretrained
from models.tokenizer import Tokenizer, load_tokenizer

__all__ = [
    "load_pretrained",
    "load_tokenizer",
    "save_pretrained",
    "BertConfig",
    "BertModel",
    "BertOutputs",
    "BertForSequenceClassification",
    "BertForTokenClassification",
    "Tokenizer",
]
