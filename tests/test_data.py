"""Audio data: files and labels, manifests, unreadable files, splits, crops and segments."""

import os
import shutil

import numpy as np
import pytest

from trillsson_tf.audio import SAMPLE_AUDIO_DIR
from trillsson_tf.train.data import (
    ARABIC_COMMANDS_SPLIT,
    CROP_SAMPLES,
    AudioItem,
    find_audio,
    index_clips,
    labels_from_name,
    load_clips,
    random_crop,
    read_crop,
    read_manifest,
    segments,
    split_items,
)
from trillsson_tf.errors import ParameterError

FSDD = os.path.join(SAMPLE_AUDIO_DIR, "fsdd")
LIBRISPEECH = os.path.join(SAMPLE_AUDIO_DIR, "librispeech")


@pytest.fixture
def audio_folder(tmp_path):
    """Two real FSDD files (one in a subfolder), one LibriSpeech file and one corrupt .wav."""
    (tmp_path / "sub").mkdir()
    shutil.copy(os.path.join(FSDD, "3_theo_0.wav"), tmp_path)
    shutil.copy(os.path.join(FSDD, "7_lucas_5.wav"), tmp_path / "sub")
    shutil.copy(os.path.join(LIBRISPEECH, "367-130732-0000.flac"), tmp_path)
    (tmp_path / "broken.wav").write_bytes(b"RIFF this is not audio")
    (tmp_path / "notes.txt").write_text("not audio")
    return tmp_path


def test_labels_from_bundled_file_names():
    assert labels_from_name("x/3_theo_0.wav") == {"digit": "3", "speaker": "theo", "take": "0", "split": "test"}
    assert labels_from_name("7_lucas_12.wav")["split"] == "train"
    assert labels_from_name("367-130732-0000.flac") == {"speaker": "367", "chapter": "130732", "sex": "F"}
    assert labels_from_name("1688-142285-0002.flac")["sex"] == "M"
    assert labels_from_name("recording.wav") == {}


def test_labels_from_arabic_speech_commands_names(tmp_path):
    # {keyword}/{speaker}_NO_{round}.flac; the split is the corpus' own, speaker-disjoint.
    assert labels_from_name("arabic_speech_commands/zoom in/00000003_NO_02.flac") == {
        "keyword": "zoom in",
        "speaker": "00000003",
        "round": "02",
        "split": "test",
    }
    assert labels_from_name("yes/00000001_NO_01.flac")["split"] == "train"
    assert "split" not in labels_from_name("yes/00000099_NO_01.flac")  # not one of its 30 speakers
    assert labels_from_name("00000001_NO_01.flac") == {}  # no keyword folder
    assert sorted(ARABIC_COMMANDS_SPLIT.values()).count("train") == 18 and len(ARABIC_COMMANDS_SPLIT) == 30
    # A folder in the corpus' layout (real speech under its names) needs no manifest.
    for keyword, speaker in (("yes", "00000001"), ("zoom in", "00000002")):
        (tmp_path / keyword).mkdir()
        shutil.copy(os.path.join(FSDD, "3_theo_0.wav"), tmp_path / keyword / f"{speaker}_NO_01.wav")
    items = find_audio(tmp_path)
    assert [(item.labels["keyword"], item.labels["speaker"], item.labels["split"]) for item in items] == [
        ("yes", "00000001", "train"),
        ("zoom in", "00000002", "val"),
    ]
    assert len(load_clips(items).clips) == 2


def test_folder_is_searched_recursively_and_unreadable_files_are_skipped_by_name(audio_folder):
    items = find_audio(audio_folder)
    assert sorted(os.path.basename(item.path) for item in items) == [
        "367-130732-0000.flac",
        "3_theo_0.wav",
        "7_lucas_5.wav",
        "broken.wav",
    ]
    loaded = load_clips(items)
    assert len(loaded.clips) == 3
    assert [os.path.basename(path) for path, _ in loaded.skipped] == ["broken.wav"]
    for clip in loaded.clips:
        assert clip.dtype == np.float32 and clip.ndim == 1
    # 8 kHz FSDD is resampled to 16 kHz: about twice its frames.
    fsdd_item = next(i for i, item in enumerate(loaded.items) if item.path.endswith("3_theo_0.wav"))
    import soundfile

    assert abs(len(loaded.clips[fsdd_item]) - 2 * soundfile.info(items[1].path).frames) <= 2


def test_no_audio_is_a_clear_error(tmp_path):
    with pytest.raises(ParameterError, match="No audio found"):
        find_audio(tmp_path)
    with pytest.raises(ParameterError, match="neither a folder nor a .csv"):
        find_audio(tmp_path / "missing")
    (tmp_path / "bad.wav").write_bytes(b"junk")
    with pytest.raises(ParameterError, match="None of the 1 audio file"):
        load_clips(find_audio(tmp_path))


def test_manifest_with_and_without_header(audio_folder):
    (audio_folder / "plain.csv").write_text("3_theo_0.wav,happy,theo\nsub/7_lucas_5.wav,sad,lucas\n")
    items = read_manifest(audio_folder / "plain.csv")
    assert [item.labels["label"] for item in items] == ["happy", "sad"]
    assert items[1].path == os.path.join(str(audio_folder), "sub/7_lucas_5.wav")
    assert items[0].labels["digit"] == "3"  # labels from the name are kept
    (audio_folder / "header.csv").write_text("path,emotion\n3_theo_0.wav,calm\n")
    assert find_audio(audio_folder / "header.csv")[0].labels["emotion"] == "calm"
    extra = find_audio(audio_folder, labels=audio_folder / "header.csv")
    assert [item.labels.get("emotion") for item in extra if item.path.endswith("3_theo_0.wav")] == ["calm"]
    (audio_folder / "empty.csv").write_text("path,label\n")
    with pytest.raises(ParameterError, match="lists no audio"):
        read_manifest(audio_folder / "empty.csv")


def test_split_is_deterministic_and_stable():
    items = find_audio(FSDD)
    train, validation = split_items(items, validation_fraction=0.2, seed=3)
    assert len(train) + len(validation) == len(items)
    assert 0.1 < len(validation) / len(items) < 0.3
    again_train, again_validation = split_items(list(reversed(items)), validation_fraction=0.2, seed=3)
    assert {i.path for i in again_validation} == {i.path for i in validation}
    # Removing files never moves the others.
    _, fewer_validation = split_items(items[:100], validation_fraction=0.2, seed=3)
    assert {i.path for i in fewer_validation} == {i.path for i in validation if i in items[:100]}
    assert split_items(items, validation_fraction=0.2, seed=4)[1] != validation
    with pytest.raises(ParameterError, match="validation_fraction"):
        split_items(items, validation_fraction=1.0)


def test_list_of_paths_is_a_source():
    items = find_audio([os.path.join(FSDD, "0_george_0.wav")])
    assert items == [AudioItem(os.path.join(FSDD, "0_george_0.wav"), labels_from_name("0_george_0.wav"))]


def test_crops_and_segments(fsdd_clips, librispeech_clips):
    rng = np.random.default_rng(0)
    short, long = fsdd_clips[0], librispeech_clips[0]
    crop = random_crop(short, rng)
    assert crop.shape == (CROP_SAMPLES,)
    assert segments(short).shape == (1, CROP_SAMPLES)
    np.testing.assert_array_equal(segments(short)[0, : len(short)], short)  # mirror padding keeps the clip first
    pieces = segments(long)
    assert pieces.shape == (len(long) // CROP_SAMPLES, CROP_SAMPLES)
    np.testing.assert_array_equal(pieces[1], long[CROP_SAMPLES : 2 * CROP_SAMPLES])
    assert len({random_crop(long, rng)[:10].tobytes() for _ in range(5)}) > 1  # crops start at random places


def test_index_reads_only_crops_and_equals_cropping_loaded_clips(audio_folder, tmp_path):
    import soundfile

    # A 16 kHz WAV shorter than a crop: read whole and mirror-padded, as random_crop pads.
    short = tmp_path / "short_16k.wav"
    soundfile.write(short, np.sin(np.arange(9000) / 7.0).astype(np.float32) * 0.5, 16000, subtype="PCM_16")
    items = find_audio(audio_folder) + find_audio([str(short)])
    index, loaded = index_clips(items), load_clips(items)
    assert [item.path for item in index.items] == [item.path for item in loaded.items]
    assert [os.path.basename(path) for path, _ in index.skipped] == ["broken.wav"]
    assert index.lengths.tolist() == [len(clip) for clip in loaded.clips]
    # LibriSpeech is 16 kHz FLAC (read by window); FSDD is 8 kHz (decoded, resampled).
    assert {os.path.basename(i.path): bool(d) for i, d in zip(index.items, index.direct)} == {
        "367-130732-0000.flac": True,
        "3_theo_0.wav": False,
        "7_lucas_5.wav": False,
        "short_16k.wav": True,
    }
    for position, clip in enumerate(loaded.clips):
        for seed in range(3):
            expected = random_crop(clip, np.random.default_rng(seed))
            np.testing.assert_array_equal(read_crop(index, position, np.random.default_rng(seed)), expected)


def test_read_crop_names_a_file_shorter_than_its_index(tmp_path):
    import soundfile

    path = tmp_path / "long.wav"
    soundfile.write(path, np.zeros(48000, np.float32), 16000)
    index = index_clips(find_audio([str(path)]))
    soundfile.write(path, np.zeros(33000, np.float32), 16000)  # replaced during a run
    rng = np.random.default_rng(1)
    with pytest.raises(ParameterError, match="fewer than its header's 48000"):
        for _ in range(20):
            read_crop(index, 0, rng)
