"""SSDLite object detection with a MobileNeXt backbone, on torchvision's SSD (``mobilenext detect``)."""

from .data import VOC_CLASSES, COCODetection, VOCDetection, collate_detection
from .metrics import DetectionEvaluator, voc_ap
from .model import DETECTORS, MobileNetV2SSDFeatures, MobileNeXtSSDFeatures, SSDDefaultBoxes, create_detector, ssdlite
from .shapes import SHAPES_CLASSES, write_shapes_voc
from .transforms import detection_transforms

__all__ = [
    "COCODetection",
    "DETECTORS",
    "DetectionEvaluator",
    "MobileNeXtSSDFeatures",
    "MobileNetV2SSDFeatures",
    "SHAPES_CLASSES",
    "SSDDefaultBoxes",
    "VOCDetection",
    "VOC_CLASSES",
    "collate_detection",
    "create_detector",
    "detection_transforms",
    "ssdlite",
    "voc_ap",
    "write_shapes_voc",
]
