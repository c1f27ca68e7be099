"""Preprocessing: clip records -> WebDataset tar shards + manifest.parquet + rejects.parquet.

Output under the URL (local folder or s3://bucket/prefix):
    shards/shard-000000.tar ...  samples `<key>.audio.npy`, `.video.npy` (not in audio shards), `.json` (key: the clip_id, dots escaped;
                                 the json: the clip's id, labels and lengths)
    manifest.parquet             one row per clip: labels, label indices, split assignments, shard, shapes, the files
                                 it was made of (`source_path`, `audio_path`, `video_path`: a fallback's where the
                                 clip's own did not decode), the audio's own sample rate (`source_rate`, Hz; not in
                                 manifests made before it was kept), the frequency its sound stops at (`bandwidth_hz`,
                                 null where too short or quiet to tell; not in manifests made before it was measured);
                                 schema metadata "avdis" holds label sets, features, shards (and a generated
                                 corpus's `data.synth` settings)
    rejects.parquet              source_path, reason, unused for every file that could not be used, or not all of
                                 it (unused: a file its clip was made without, no fault), sorted

Clips are dealt to shards in a seeded shuffled order (shards mix speakers and emotions).
Each shard is one Ray task (or one step of a local loop): it decodes its clips and
writes the shard in one atomic write, so no half shard is ever visible. Label indices and
splits are given once every clip is decoded, to the clips that were (`assign`), and live
in the manifest only: a clip rejected at decoding must not leave its speaker without a
train clip, a fold empty, or a speaker class nobody has.

A build first removes the old manifest (an interrupted build never leaves a manifest
beside shards it does not describe), then writes the shards, deletes shard files the new
manifest does not list, and writes the manifest last. A rerun is up to date, and does
nothing, only when the manifest's fingerprint matches the corpus (labels, and each source
file's path, size and mtime_ns: a content hash would read the whole corpus on every rerun; paths as the build spelt
the source folder, so another spelling of the same folder is the same corpus; the scan's rejects but files that are
no media, such as the Thumbs.db an OS writes on its own) and
settings, and `shards/` holds exactly the listed shards at their recorded byte sizes.
Anything else, or `force`, rebuilds; identical inputs give identical bytes.

The modules, by job: `layout` (the output's names, a shard's task, the errors), `encode` (a clip -> its sample and
manifest row, a task -> its shard file), `on_ray` (the tasks as Ray tasks), `build` (scan, plan, the up-to-date
check, assign, the manifest), `made_with` (the decoding, settings and fingerprint shards are made with, and the
checks of a config against them), `manifest` (reading it, its hash, the shard files stored beside it), `counts` and
`notes` (what a build's summary, or its error, says).
The names below are the modules' own, imported here: a patch of one here reaches no module that reads it; patch it
where it is read (`made_with.DECODING`, `manifest._READ`, `build.write_shard`).
"""

from __future__ import annotations

from avdis.data.shards.build import BUILD, Labels, assign, build_shards, plan, source_changed
from avdis.data.shards.counts import emotion_counts, manifest_rates, split_counts
from avdis.data.shards.encode import VIDEO_BY_NAME, sample_key, write_shard
from avdis.data.shards.layout import (MANIFEST, REJECTS, SHARD_DIR, ManifestUnreadable, PreprocessError, ShardTask,
                                      shard_name)
from avdis.data.shards.made_with import (DECODING, HELD, SCAN, SPLIT_MADE_WITH, check_made_with, check_synth,
                                         modality_of, synth_made)
from avdis.data.shards.manifest import load_manifest, manifest_hash, read_manifest, unsound_shards
from avdis.data.shards.notes import HEARD_AT_MOST
from avdis.data.shards.on_ray import decode_alone, run_on_ray, write_shard_seen

__all__ = ["BUILD", "DECODING", "HEARD_AT_MOST", "HELD", "MANIFEST", "REJECTS", "SCAN", "SHARD_DIR", "SPLIT_MADE_WITH",
           "VIDEO_BY_NAME", "Labels", "ManifestUnreadable", "PreprocessError", "ShardTask", "assign", "build_shards",
           "check_made_with", "check_synth", "decode_alone", "emotion_counts", "load_manifest", "manifest_hash",
           "manifest_rates", "modality_of", "plan", "read_manifest", "run_on_ray", "sample_key", "shard_name",
           "source_changed", "split_counts", "synth_made", "unsound_shards", "write_shard", "write_shard_seen"]
