"""Training and evaluation of language models."""

from .checkpoint import latest_checkpoint, load_trainer_state, save_checkpoint
from .config import TrainConfig
from .evaluate import PROTOCOL, EvalResult, evaluate
from .trainer import Trainer, TrainingDiverged, TrainResult, lr_factor, resolve_device

__all__ = [
    "PROTOCOL",
    "EvalResult",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingDiverged",
    "evaluate",
    "latest_checkpoint",
    "load_trainer_state",
    "lr_factor",
    "resolve_device",
    "save_checkpoint",
]
