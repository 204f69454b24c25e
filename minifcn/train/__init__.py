"""Training, evaluation and prediction: presets, the trainer and its optimisers, the demo."""
from .config import PRESETS, TrainConfig, preset
from ..models.segment import segment, segment_batch
from .evaluate import evaluate
from .optim import SGD, Adam, learning_rate
from .trainer import Trainer, TrainingDiverged, model_for_config

__all__ = ["PRESETS", "TrainConfig", "preset", "evaluate", "segment", "segment_batch", "SGD", "Adam",
           "learning_rate", "Trainer", "TrainingDiverged", "model_for_config"]
