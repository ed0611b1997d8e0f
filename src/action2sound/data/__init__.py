"""Datasets as one clip table: readers (Ego4D-Sounds, EPIC-KITCHENS-100, a folder of videos), splits, neighbours."""

from .manifest import SOURCES, SPLITS, TABLE_COLUMNS, Clip, ClipTable, ReadReport, assign_splits
from .neighbours import Neighbours
from .readers import clean_narration, mine_folder, parse_timestamp, read_ego4d_sounds, read_epic_kitchens
from .splits import load_clip_table, split_train_val

__all__ = [
    "SOURCES", "SPLITS", "TABLE_COLUMNS", "Clip", "ClipTable", "Neighbours", "ReadReport", "assign_splits",
    "clean_narration", "load_clip_table", "mine_folder", "parse_timestamp", "read_ego4d_sounds",
    "read_epic_kitchens", "split_train_val",
]
