"""Source datasets: layout detection, image-level labels, val/test pairs, single-tissue pools."""

from hisyngen.sources.background import BackgroundParams, background_mask
from hisyngen.sources.labels import LabelParseError, format_labels, parse_bracket_labels, parse_label_text
from hisyngen.sources.layout import LAYOUTS, Problem, Record, Source, detect_layout, open_source
from hisyngen.sources.pools import PoolPack, build_pool_pack, default_cache_dir

__all__ = [
    "BackgroundParams", "LAYOUTS", "LabelParseError", "PoolPack", "Problem", "Record", "Source",
    "background_mask", "build_pool_pack", "default_cache_dir", "detect_layout", "format_labels",
    "open_source", "parse_bracket_labels", "parse_label_text",
]
