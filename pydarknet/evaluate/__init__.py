"""Evaluation: VOC-style average precision."""
