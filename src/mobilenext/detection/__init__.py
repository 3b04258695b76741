"""SSDLite object detection with a MobileNeXt backbone, on torchvision's SSD (``mobilenext detect``).

By job: ``model`` (the network and its default boxes), ``settings`` (test-time settings, one owner),
``authors`` (their checkpoint layout and released detectors), ``files`` (what a detector's file means),
``data`` and ``transforms`` (VOC/COCO and the SSD augmentation), ``metrics`` (VOC mAP, COCO AP), ``engine``
(training: the task on the shared engine), ``predict`` and ``export`` (drawn boxes, ONNX), ``commands``
(``mobilenext detect ...``). Every name below loads its module on first use.
"""

from .._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "COCO_CLASSES": "data",
        "VOC_CLASSES": "data",
        "COCODetection": "data",
        "VOCDetection": "data",
        "collate_detection": "data",
        "open_detection_data": "data",
        "DetectionEvaluator": "metrics",
        "voc_ap": "metrics",
        "DETECTORS": "model",
        "MobileNeXtSSDFeatures": "model",
        "MobileNetV2SSDFeatures": "model",
        "SSDDefaultBoxes": "model",
        "create_detector": "model",
        "ssdlite": "model",
        "PostProcessing": "settings",
        "post_processing": "settings",
        "SHAPES_CLASSES": "shapes",
        "write_shapes_voc": "shapes",
        "detection_transforms": "transforms",
    },
)
