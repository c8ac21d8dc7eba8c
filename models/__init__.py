"""A self-contained BERT-compatible encoder that loads HuggingFace checkpoints."""
from models.bert import (BertForSequenceClassification, BertForTokenClassification, BertModel,
                         BertOutputs)
from models.config import BertConfig
from models.loader import load_pretrained, save_pretrained

__all__ = ["load_pretrained", "load_tokenizer", "save_pretrained", "BertConfig", "BertModel",
           "BertOutputs", "BertForSequenceClassification", "BertForTokenClassification"]


def __getattr__(name):            # load_tokenizer arrives with models/tokenizer.py
    if name == "load_tokenizer":
        from models.tokenizer import load_tokenizer
        return load_tokenizer
    raise AttributeError(name)
