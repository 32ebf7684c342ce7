"""Parameters, nonzeros and MACs of compressor.flops against hand-computed values."""

import torch
from torch import nn

from compressor.flops import count_macs, size_change, size_report
from pruners.transforms import KroneckerLinear


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.fc = KroneckerLinear([[2, 8], [3, 8]])  # 6 x 64

    def forward(self, x):
        return self.fc(torch.flatten(self.conv(x), 1))


def test_macs_params_nonzeros_and_per_layer_rows():
    net = Net()
    with torch.no_grad():
        net.conv.weight[0] = 0
    conv_macs, fc_macs = 4 * 4 * 4 * 2 * 9, 8 * 8 * 3 + 2 * 8 * 3  # (M K1 K2 I2) + (M I1 K1 I2), M = 1
    assert count_macs(net, (2, 4, 4)) == conv_macs + fc_macs
    rep = size_report(net, (2, 4, 4))
    assert rep["parameters"] == (4 * 2 * 9 + 4) + (16 + 24 + 6)
    assert rep["nonzeros"] == rep["parameters"] - 18 - int((net.conv.bias == 0).sum()) - int((net.fc.bias == 0).sum())
    rows = {r["layer"]: r for r in rep["layers"]}
    assert set(rows) == {"conv", "fc"} and rows["fc"]["shape"] == "2x8 ⊗ 3x8" and rows["fc"]["macs"] == fc_macs
    assert rows["conv"]["macs"] == conv_macs and size_report(net, None)["macs"] is None
    change = size_change({"parameters": 100, "nonzeros": 50, "macs": 10}, {"parameters": 25, "nonzeros": 5, "macs": 0})
    assert change["parameters"]["reduction"] == 4 and change["macs"]["reduction"] is None
