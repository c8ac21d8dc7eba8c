"""The trainer: a generic training loop for any `nn.Module`, with resumable checkpoints,
data-parallel training under torchrun, AdamW and dynamic padding.

    from minipeft.training import TrainConfig, train, evaluate, PadCollate, seed_everything

Files: train (the entry point and its config), loop (epochs and steps), checkpoint, distributed,
optim, batching, memory.
"""

from minipeft.training.batching import LengthBucketSampler, PadCollate
from minipeft.training.train import TrainConfig, TrainResult, evaluate, seed_everything, train

__all__ = [
    "train",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "seed_everything",
    "PadCollate",
    "LengthBucketSampler",
]
