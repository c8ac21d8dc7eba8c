"""TrainConfig.grad_checkpointing on our BERT: the same trained tensors, fewer bytes saved for backward."""

import torch
import torch.nn.functional as F

from minipeft import LoraConfig, inject
from minipeft.training import TrainConfig, seed_everything, train
from models import BertConfig, BertForSequenceClassification

CFG = BertConfig(
    vocab_size=50,
    hidden_size=32,
    num_hidden_layers=3,
    num_attention_heads=2,
    intermediate_size=64,
    max_position_embeddings=64,
)


def _data(n, seed):
    g = torch.Generator().manual_seed(seed)
    return [
        {
            "input_ids": torch.randint(
                1, 50, (int(torch.randint(20, 40, (1,), generator=g)),), generator=g
            ).tolist(),
            "label": i % 2,
        }
        for i in range(n)
    ]


def loss_fn(model, batch):
    return F.cross_entropy(model(batch["input_ids"], batch["attention_mask"]), batch["label"])


def eval_fn(model, batches):
    return {"neg_loss": -sum(loss_fn(model, b).item() for b in batches)}


def _run(checkpointing: bool):
    seed_everything(0)
    model = BertForSequenceClassification(CFG, num_labels=2)  # dropout 0.1 stays on
    inject(
        model,
        LoraConfig(r=4, alpha=4, dropout=0.1, targets=("query", "value"), modules_to_save=("classifier",)),
    )
    cfg = TrainConfig(
        epochs=1,
        lr=1e-2,
        batch_size=4,
        grad_accum=2,
        seed=1,
        select_metric="neg_loss",
        grad_checkpointing=checkpointing,
        progress=False,
    )
    result = train(model, _data(24, 0), _data(8, 1), loss_fn, eval_fn, cfg)
    return model, result


def test_checkpointing_gives_the_same_tensors_and_saves_fewer_bytes():
    plain, r_plain = _run(False)
    ckpt, r_ckpt = _run(True)
    for (k, a), b in zip(plain.state_dict().items(), ckpt.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6, rtol=0), k  # recomputation replays the dropout RNG
    # 3 layers recomputed: only each layer's input (plus embeddings/head) stays saved
    assert r_ckpt.memory["saved_bytes_max"] < 0.5 * r_plain.memory["saved_bytes_max"]
    assert all(
        m.gradient_checkpointing is False for m in ckpt.modules() if hasattr(m, "gradient_checkpointing")
    )
