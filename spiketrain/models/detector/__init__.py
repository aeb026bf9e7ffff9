"""Hybrid SNN-ANN event-camera detector: spiking backbone, attention bridge, YOLOX-style head."""
from .backbone import SpikingBackbone, SpikingBlock
from .bridge import AttentionBridge, NaiveBridge, SpatialTemporalAttention, build_bridge, event_rate_gate
from .deform import DeformConv2d, deform_conv2d
from .head import ANNPart, YOLOXHead, batched_nms, box_iou, decode, decode_boxes, make_anchors, nms
from .loss import assign, detection_loss, giou
from .model import HybridDetector
from .plif import PLIF, StepBatchNorm, plif_step

__all__ = ["SpikingBackbone", "SpikingBlock", "AttentionBridge", "NaiveBridge",
           "SpatialTemporalAttention", "build_bridge", "event_rate_gate", "DeformConv2d",
           "deform_conv2d", "ANNPart", "YOLOXHead", "batched_nms", "box_iou", "decode",
           "decode_boxes", "make_anchors", "nms", "assign", "detection_loss", "giou",
           "HybridDetector", "PLIF", "StepBatchNorm", "plif_step"]
