"""Apache Beam generation of imu_video_folder, for folders larger than one machine (Dataflow, Spark, Flink runners).

TFDS runs a split on Beam when `_generate_examples` returns a PTransform and writes its array_record shards itself
(no TensorFlow needed). Each recording is one Beam element, so recordings are read, windowed and JPEG-encoded on
the workers; the records are those of the single-process build. A recording's report (bad file, windows outside
the video, record count) is a second output, written as JSON lines under the dataset's incomplete directory and
folded into metadata.json once the pipeline is done (`fold_reports`), so a build on many machines reports the same
as one on a single machine.
"""

from __future__ import annotations

import json
import os

import apache_beam as beam
from etils import epath

REPORTS_DIR = "beam_recording_reports"  # under the dataset's incomplete directory; removed after the pipeline


class _RecordingExamples(beam.DoFn):
    """(key, record) of every window of one recording, and its report on the "report" output."""

    def __init__(self, builder, manifest):
        # the builder pickles as its config and data_dir (TFDS __getstate__); the manifest travels whole
        self._builder, self._manifest = builder, manifest

    def process(self, recording):
        records, report = self._builder.recording_outcome(recording, self._manifest)
        yield beam.pvalue.TaggedOutput("report", json.dumps(report))
        yield from records


def examples(builder, recordings, manifest) -> beam.PTransform:
    """The PTransform TFDS runs for one split: recordings -> (key, record)."""
    reports = os.fspath(epath.Path(builder.data_dir) / REPORTS_DIR / recordings[0].split)

    @beam.ptransform_fn
    def generate(root):
        out = (root
               | "Recordings" >> beam.Create(recordings)
               | "SpreadOverWorkers" >> beam.Reshuffle()
               | "Windows" >> beam.ParDo(_RecordingExamples(builder, manifest)).with_outputs("report", main="records"))
        _ = out.report | "WriteReports" >> beam.io.WriteToText(reports, file_name_suffix=".jsonl")
        return out.records

    return generate()  # pylint: disable=no-value-for-parameter


def fold_reports(builder) -> None:
    """After the pipeline: the recordings' reports into the builder's metadata (in manifest order), then removed;
    raises as the single-process build does when a split kept no recording."""
    folder = epath.Path(builder.data_dir) / REPORTS_DIR
    reports = [json.loads(line) for path in folder.glob("*.jsonl") for line in path.read_text().splitlines()
               if line]
    folder.rmtree()
    for report in sorted(reports, key=lambda r: r["index"]):
        builder.note(report)
    for split in sorted({r["split"] for r in reports}):
        if not sum(r["records"] for r in reports if r["split"] == split):
            raise builder.no_usable_recording(split)
