import pytest
import torch

from compressor.models import create_model
from compressor.training import TrainConfig, Trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("adv", ["pgd", "trades"])
def test_cuda_training_uses_bf16_autocast_and_channels_last(digits, adv):
    torch.manual_seed(0)
    model = create_model("cnn-small", 10, 1, digits.info.mean, digits.info.std)
    trainer = Trainer(model, digits, TrainConfig(epochs=2, batch_size=64, lr=0.05, adv=adv, eps=0.1, steps=5,
                                                 device="cuda"), quiet=True)
    assert trainer.amp and trainer.channels_last
    result = trainer.fit()
    assert next(model.parameters()).is_cuda
    assert result.best_metrics["val_clean_acc"] > 0.3
