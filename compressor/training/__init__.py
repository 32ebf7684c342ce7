"""Training: standard, PGD-AT and TRADES, with callbacks for pruners, resume and DDP."""

from .callbacks import Callback, StopTraining
from .distributed import DistContext, init_distributed, pick_device, shutdown
from .engine import Diverged, TrainConfig, Trainer, TrainResult
from .losses import craft_pgd_at, craft_trades, trades_kl, trades_loss

__all__ = ["Callback", "DistContext", "Diverged", "StopTraining", "TrainConfig", "TrainResult", "Trainer", "craft_pgd_at",
           "craft_trades", "init_distributed", "pick_device", "shutdown", "trades_kl", "trades_loss"]
