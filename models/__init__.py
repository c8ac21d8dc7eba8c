"""A self-contained BERT-compatible encoder that loads HuggingFace checkpoints.

The names below are imported on first use (PEP 562), so that `models.assets` and `models.presets`,
which need no torch, load in milliseconds: the command lines answer `--help` at once.
"""

from importlib import import_module

_WHERE = {
    "load_pretrained": "models.loader",
    "load_tokenizer": "models.tokenizer",
    "save_pretrained": "models.loader",
    "BertConfig": "models.config",
    "BertModel": "models.bert",
    "BertOutputs": "models.bert",
    "BertForSequenceClassification": "models.bert",
    "BertForTokenClassification": "models.bert",
    "Tokenizer": "models.tokenizer",
}
__all__ = list(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    value = getattr(import_module(_WHERE[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
