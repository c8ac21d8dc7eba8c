"""Loss and evaluation functions that the generic training loop calls, per task type.

The loop hands batches from `minipeft.training.batching.PadCollate`: model inputs (`input_ids`,
`attention_mask`, `token_type_ids`) plus task keys (`label` for a note; `labels` per sub-token,
`word_ids` and `word_tags` per word for NER), which never reach the model.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from tasks.encode import IGNORE, word_predictions
from tasks.metrics import classification_metrics, ner_metrics

MODEL_KEYS = ("input_ids", "attention_mask", "token_type_ids")
PAD_VALUES = {"word_ids": -1, "word_tags": IGNORE}  # for PadCollate(pad_values=...)


def model_inputs(batch: dict) -> dict:
    return {k: batch[k] for k in MODEL_KEYS if k in batch}


def seq_cls_loss(model, batch) -> torch.Tensor:
    logits = model(**model_inputs(batch))  # (batch, labels)
    return F.cross_entropy(logits.float(), batch["label"])


def token_cls_loss(model, batch) -> torch.Tensor:
    logits = model(**model_inputs(batch))  # (batch, seq, labels)
    return F.cross_entropy(logits.float().flatten(0, 1), batch["labels"].flatten(), ignore_index=IGNORE)


def seq_cls_probs(model, batches) -> tuple[np.ndarray, np.ndarray, float]:
    """(gold labels (n,), softmax probabilities (n, labels), mean cross-entropy) over all batches."""
    gold, probs, loss_sum = [], [], 0.0
    for batch in batches:
        logits = model(**model_inputs(batch)).float()  # (batch, labels)
        loss_sum += F.cross_entropy(logits, batch["label"], reduction="sum").item()
        probs.append(torch.softmax(logits, dim=-1).cpu().double().numpy())
        gold.append(batch["label"].cpu().numpy())
    y = np.concatenate(gold)
    return y, np.concatenate(probs), loss_sum / len(y)


def seq_cls_eval(model, batches) -> dict[str, float]:
    y, p, loss = seq_cls_probs(model, batches)
    return {**classification_metrics(y, p), "loss": loss}


def make_token_cls_eval(labels: tuple[str, ...]):
    """An eval_fn that scores per word: the tag predicted at each word's first sub-token."""
    outside = labels.index("O") if "O" in labels else 0

    def token_cls_eval(model, batches) -> dict[str, float]:
        gold, pred = [], []
        for batch in batches:
            tokens = model(**model_inputs(batch)).argmax(dim=-1).cpu().tolist()  # (batch, seq)
            word_ids = batch["word_ids"].cpu().tolist()
            word_tags = batch["word_tags"].cpu().tolist()
            for toks, wids, tags in zip(tokens, word_ids, word_tags):
                tags = [t for t in tags if t != IGNORE]
                words = word_predictions(toks, wids, len(tags), outside)
                gold.append([labels[t] for t in tags])
                pred.append([labels[t] for t in words])
        return ner_metrics(gold, pred)

    return token_cls_eval
