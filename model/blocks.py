"""Residual blocks shared by the ResCNN and Q2L backbones (Won et al.'s `Res_2d`)."""

from __future__ import annotations

from torch import Tensor, nn


class ResBlock2d(nn.Module):
    """Residual 3×3 block with a strided convolution on both paths (`Res_2d` in Won et al.).

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        stride: Down-sampling factor of both paths; every block in the zoo uses 2.

    Shapes:
        (B, in_channels, H, W) -> (B, out_channels, ceil(H / stride), ceil(W / stride))
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 2) -> None:
        super().__init__()
        self.conv_1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1)
        self.bn_1 = nn.BatchNorm2d(out_channels)
        self.conv_2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.bn_2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        # The projection shortcut exists whenever the shape changes, which is every block here.
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn_2(self.conv_2(self.relu(self.bn_1(self.conv_1(x)))))
        return self.relu(out + self.shortcut(x))


def res_stack(in_channels: int, channels: tuple[int, ...]) -> nn.Sequential:
    """Stride-2 residual blocks with the given output channels, one after another."""
    blocks: list[nn.Module] = []
    for out_channels in channels:
        blocks.append(ResBlock2d(in_channels, out_channels))
        in_channels = out_channels
    return nn.Sequential(*blocks)
