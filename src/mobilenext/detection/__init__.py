"""SSDLite object detection with a MobileNeXt backbone."""
