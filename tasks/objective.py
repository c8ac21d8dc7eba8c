"""Loss and evaluation functions that the generic training loop calls, per task type.

The loop hands batches from `minipeft.training.PadCollate`: model inputs (`input_ids`,
`attention_mask`, `token_type_ids`) plus task keys (`label` for a note; `labels` per sub-token,
`word_ids` and `word_tags` per word for NER), which never reach the model.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from minipeft.training import Evaluator
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


def seq_cls_predict(model, batch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One batch: (gold labels (batch,), softmax probabilities (batch, labels), cross-entropy (batch,))."""
    logits = model(**model_inputs(batch)).float()  # (batch, labels)
    loss = F.cross_entropy(logits, batch["label"], reduction="none")  # (batch,)
    probs = torch.softmax(logits, dim=-1).double()  # (batch, labels)
    return batch["label"].cpu().numpy(), probs.cpu().numpy(), loss.double().cpu().numpy()


def seq_cls_score(outputs: list) -> dict[str, float]:
    """Classification metrics and the mean cross-entropy over every batch's seq_cls_predict output."""
    y = np.concatenate([o[0] for o in outputs])
    p = np.concatenate([o[1] for o in outputs])
    loss = float(np.concatenate([o[2] for o in outputs]).mean())
    return {**classification_metrics(y, p), "loss": loss}


# eval_fn for sequence classification; an Evaluator, so torchrun's processes share the batches
seq_cls_eval = Evaluator(seq_cls_predict, seq_cls_score)


def make_token_cls_eval(labels: tuple[str, ...]) -> Evaluator:
    """An eval_fn that scores per word: the tag predicted at each word's first sub-token."""
    outside = labels.index("O") if "O" in labels else 0

    def predict(model, batch) -> tuple[list, list]:
        """One batch: (gold tags, predicted tags) per sentence, as label strings."""
        tokens = model(**model_inputs(batch)).argmax(dim=-1).cpu().tolist()  # (batch, seq)
        word_ids = batch["word_ids"].cpu().tolist()
        word_tags = batch["word_tags"].cpu().tolist()
        gold, pred = [], []
        for toks, wids, tags in zip(tokens, word_ids, word_tags):
            tags = [t for t in tags if t != IGNORE]
            words = word_predictions(toks, wids, len(tags), outside)
            gold.append([labels[t] for t in tags])
            pred.append([labels[t] for t in words])
        return gold, pred

    def score(outputs: list) -> dict[str, float]:
        return ner_metrics([g for o in outputs for g in o[0]], [p for o in outputs for p in o[1]])

    return Evaluator(predict, score)
