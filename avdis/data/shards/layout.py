"""The output's names (manifest.parquet, rejects.parquet, shards/shard-NNNNNN.tar), the task of one shard, and
the errors preprocessing raises."""

from __future__ import annotations

import re
from dataclasses import dataclass

from avdis.data.corpora import ClipRecord
from avdis.errors import AvdisError


MANIFEST = "manifest.parquet"
REJECTS = "rejects.parquet"
SHARD_DIR = "shards"


class PreprocessError(AvdisError):
    """Nothing usable came out of preprocessing."""


class ManifestUnreadable(PreprocessError):
    """manifest.parquet is there but is no manifest avdis wrote (damaged, cut short, another file in its place)."""


@dataclass(frozen=True)
class ShardTask:
    index: int
    records: list[ClipRecord]


def shard_name(index: int) -> str:
    return f"shard-{index:06d}.tar"


SHARD_NAME = re.compile(r"shard-\d{6,}\.tar")  # what shard_name writes
