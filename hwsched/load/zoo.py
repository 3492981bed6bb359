"""The model zoo: names that build a Keras model with a fixed batch of 1.

Zoo models are built with ``weights=None`` (no pretrained weights can be downloaded); a user
passes ``--weights FILE`` to load trained ones. ``digits_cnn`` is a small residual CNN trained
on scikit-learn's digits and shipped in ``models/`` (``models/train_digits_cnn.py`` rebuilds it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

#: The repository's ``models/`` folder (the package is installed editable from the repo).
MODELS_DIR = Path(__file__).resolve().parents[2] / "models"


@dataclass(frozen=True)
class ZooEntry:
    name: str
    #: ``keras.applications`` builder, or None for a shipped file.
    builder: str | None
    input_shape: tuple[int, ...]
    description: str
    #: For shipped models: the file under ``models/``.
    file: str | None = None


ZOO: Mapping[str, ZooEntry] = MappingProxyType(
    {
        entry.name: entry
        for entry in (
            ZooEntry("efficientnet_b0", "EfficientNetB0", (224, 224, 3),
                     "EfficientNet-B0: MBConv + squeeze-excite blocks, 5.3 M params"),
            ZooEntry("mobilenet_v2", "MobileNetV2", (224, 224, 3),
                     "MobileNet-v2: inverted residuals, 3.5 M params"),
            ZooEntry("mobilenet_v3_small", "MobileNetV3Small", (224, 224, 3),
                     "MobileNet-v3 small: hard-swish + squeeze-excite, 2.5 M params"),
            ZooEntry("resnet50", "ResNet50", (224, 224, 3),
                     "ResNet-50: bottleneck residual blocks, 25.6 M params"),
            ZooEntry("vgg16", "VGG16", (224, 224, 3),
                     "VGG-16: plain conv chain, 138 M params"),
            ZooEntry("densenet121", "DenseNet121", (224, 224, 3),
                     "DenseNet-121: dense concatenation blocks, 8.1 M params"),
            ZooEntry("inception_v3", "InceptionV3", (299, 299, 3),
                     "Inception-v3: parallel-branch inception blocks, 23.9 M params"),
            ZooEntry("digits_cnn", None, (8, 8, 1),
                     "residual CNN trained on scikit-learn digits (shipped, ~10 k params)",
                     file="digits_cnn.keras"),
        )
    }
)


def zoo_names() -> tuple[str, ...]:
    return tuple(ZOO)
