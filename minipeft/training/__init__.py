"""The trainer: a generic training loop for any `nn.Module`, with resumable checkpoints,
data-parallel training under torchrun, AdamW and dynamic padding.

    from minipeft.training import PadCollate, TrainConfig, evaluate, seed_everything, train

Files: train (the entry point), config (TrainConfig, TrainResult), loop (epochs and steps),
run_state (the run's state: fresh, resumed, finished),
evaluation (evaluate(), shared by torchrun's processes), report (log.jsonl and the screen),
checkpoint, distributed, optim, batching, memory. Imports run one way: train -> loop ->
evaluation -> distributed -> batching.
"""

from minipeft.training.batching import LengthBucketSampler, PadCollate
from minipeft.training.checkpoint import seed_everything
from minipeft.training.config import TrainConfig, TrainResult
from minipeft.training.evaluation import Evaluator, evaluate
from minipeft.training.train import train

__all__ = [
    "train",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "Evaluator",
    "seed_everything",
    "PadCollate",
    "LengthBucketSampler",
]
