"""jaxssl.models: ResNet and ViT backbones, SSL heads, prototype layers and the backbone registry.

Prototype / centroid parameters of every head live at ``params["prototypes"]["kernel"]`` [K, D];
read them with :func:`get_prototypes`.
"""

from jaxssl._extras import require_train_extra

require_train_extra(__name__)

from jaxssl.models.heads import (
    MLP,
    CARPHead,
    CentroidLayer,
    DINOHead,
    ExCBPredictor,
    ExCBProjector,
    MSNHead,
)
from jaxssl.models.prototypes import (
    PrototypeMatrix,
    WeightNormPrototypes,
    get_prototypes,
    l2_normalize,
)
from jaxssl.models.registry import BACKBONES, create_backbone
from jaxssl.models.resnet import BasicBlock, Bottleneck, ResNet, resnet18, resnet50, resnet_tiny
from jaxssl.models.vit import (
    VisionTransformer,
    interpolate_pos_embed,
    vit_base,
    vit_nano,
    vit_small,
    vit_tiny,
)

__all__ = [
    "BACKBONES",
    "MLP",
    "BasicBlock",
    "Bottleneck",
    "CARPHead",
    "CentroidLayer",
    "DINOHead",
    "ExCBPredictor",
    "ExCBProjector",
    "MSNHead",
    "PrototypeMatrix",
    "ResNet",
    "VisionTransformer",
    "WeightNormPrototypes",
    "create_backbone",
    "get_prototypes",
    "interpolate_pos_embed",
    "l2_normalize",
    "resnet18",
    "resnet50",
    "resnet_tiny",
    "vit_base",
    "vit_nano",
    "vit_small",
    "vit_tiny",
]
