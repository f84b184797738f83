"""Training and evaluation data in Darknet's formats: .data files, image lists, label files."""

from pydarknet.data.augment import augment_detection, fill_truth
from pydarknet.data.datafile import read_data_file, read_list, resolve_path
from pydarknet.data.dataset import ClassificationDataset, DetectionDataset, SampleKey, collate
from pydarknet.data.labels import label_path, read_labels
from pydarknet.data.synthetic import make_shapes_dataset

__all__ = [
    "ClassificationDataset",
    "DetectionDataset",
    "SampleKey",
    "augment_detection",
    "collate",
    "fill_truth",
    "label_path",
    "make_shapes_dataset",
    "read_data_file",
    "read_labels",
    "read_list",
    "resolve_path",
]
